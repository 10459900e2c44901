"""The storage contract every output backend implements, and its one error."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Protocol

from imagerouter.errors import ImageRouterError, OutputUnusable

__all__ = ["ProviderOutputError", "Storage", "StorageError", "extension_for", "media_type_of"]

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


class ProviderOutputError(StorageError, OutputUnusable):
    """The provider's side of it: its URL answered an error, timed out or sent too much, its
    base64 is invalid, or its bytes are no image or video. The router, told by an ``accept``
    hook, fails over to another provider; the storage being unable to write is a plain
    :class:`StorageError`, which ends the job."""

    code = "output_storage_failed"


#: The first bytes of each media type an output may be, and the type they mean.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and the length
    (b"ftyp", 4, "video/mp4"),  # ISO media: MP4, QuickTime, AVIF, HEIC
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),  # Matroska / WebM
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
)

#: Bytes :func:`media_type_of` needs to see.
SIGNATURE_BYTES = 12


def media_type_of(head: bytes) -> str | None:
    """The media family ``head`` (an output's first bytes) begins like, or None when it is
    no image or video we know (an HTML error page served as ``image/png``, say)."""
    for signature, offset, kind in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return kind
    return None


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
