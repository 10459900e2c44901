"""The storage contract every output backend implements, and its one error."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Protocol

from imagerouter.errors import ImageRouterError

__all__ = ["Storage", "StorageError", "extension_for"]

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}


class StorageError(ImageRouterError):
    """An output could not be fetched from its provider or stored."""

    code = "output_storage_failed"


class Storage(Protocol):
    """Where finished images live, and how a client gets a URL for one.

    Keys are relative paths such as ``job_abc/0.png``; a backend may put them under its own
    prefix. ``url`` is a pure computation (a signature), never a network call, so it can run
    on the event loop; ``put`` and ``get`` do I/O off the loop.
    """

    #: ``local`` or ``s3``: recorded with each stored result.
    name: str

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing what was there)."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        """Store what ``chunks`` yields under ``key`` without holding it all in memory (a
        video); returns the bytes stored. An exception from ``chunks`` stores nothing."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under ``key`` (StorageError if none)."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove what is stored under ``keys`` (a key with nothing stored is skipped). A
        write of one of them still running, its caller cancelled, ends first, so that it
        cannot land after; a key being written anew meanwhile is the caller's business."""
        ...

    def url(self, key: str, expires_in_s: float) -> str:
        """A URL that downloads ``key`` for the next ``expires_in_s`` seconds."""
        ...


def extension_for(content_type: str) -> str:
    """The file extension for an image or video content type (``bin`` if unknown)."""
    return _EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "bin")
