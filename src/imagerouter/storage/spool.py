"""Writing a stream of chunks to a file off the event loop, one chunk in memory at a time.

Both backends store a video this way: local storage spools into a temporary file beside the
final one and renames it into place; S3 spools into a temporary file and hands that to boto3's
transfer manager (multipart above its threshold), which reads the file in parts rather than
holding the upload in memory.
"""

from __future__ import annotations

import asyncio
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
    written. On any error (the chunks' own too) the file is removed and the error raised."""
    loop = asyncio.get_running_loop()

    fd = await loop.run_in_executor(executor, create_new, path)
    size = 0
    try:
        async for chunk in chunks:
            if chunk:
                await loop.run_in_executor(executor, write_all, fd, chunk)
                size += len(chunk)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    return size
