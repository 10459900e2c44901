"""Writing a stream of chunks to a file off the event loop, one chunk in memory at a time.

Both backends store a video this way: local storage spools into a temporary file beside the
final one and renames it into place; S3 spools into a temporary file and hands that to boto3's
transfer manager (multipart above its threshold), which reads the file in parts rather than
holding the upload in memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import AsyncIterable
from concurrent.futures import Executor
from pathlib import Path

__all__ = ["create_new", "spool", "write_all"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def create_new(path: str | Path) -> int:
    """Open ``path`` for writing, created (it must not exist; the umask applies), with its
    directories made only when the open finds them missing: nearly every output goes into a
    directory that already exists, and asking first would cost a system call each."""
    try:
        return os.open(path, _CREATE, 0o666)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, _CREATE, 0o666)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def spool(chunks: AsyncIterable[bytes], path: Path, executor: Executor) -> int:
    """Write every chunk to ``path`` (created, must not exist) in ``executor``; the bytes
    written. On any error (the chunks' own too, or a cancel) the file is removed and the
    error raised; its descriptor is closed once the pool's work on it has ended (closing it
    under a write still running would let the rest of that write go to whatever file takes
    the number next)."""
    opening = executor.submit(create_new, path)
    try:
        fd = await asyncio.wrap_future(opening)
    except BaseException:  # cancelled: the file may still be made, and is then removed
        opening.add_done_callback(lambda done: _discard_opened(done, path))
        raise
    size = 0
    last: concurrent.futures.Future[None] | None = None
    try:
        async for chunk in chunks:
            if chunk:
                last = executor.submit(write_all, fd, chunk)
                await asyncio.wrap_future(last)
                size += len(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if last is None:
            os.close(fd)
        else:  # at once if it has ended, else in the pool thread as it ends
            last.add_done_callback(lambda _: os.close(fd))
        raise
    os.close(fd)
    return size


def _discard_opened(opening: concurrent.futures.Future[int], path: Path) -> None:
    """The file a cancelled :func:`spool` was still creating: closed and removed."""
    if opening.cancelled() or opening.exception() is not None:
        return
    os.close(opening.result())
    with contextlib.suppress(OSError):
        os.unlink(path)
