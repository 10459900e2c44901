"""Output storage: finished images re-hosted on local disk (signed URLs) or any S3 store.

=============  ===========================================================
module         owns
=============  ===========================================================
``base``       the :class:`Storage` protocol and :class:`StorageError`
``config``     :class:`StorageSettings`, the ``[server.storage]`` table
``local``      :class:`LocalStorage`: files + HMAC-signed expiring URLs
``s3``         :class:`S3Storage`: boto3 in a bounded pool, presigned URLs
``outputs``    :class:`OutputStore` (re-hosting) and :func:`present_result`
``spool``      a stream written to a file in the pool, one chunk at a time
``inflight``   each key's writes still running in the pool (deletes wait)
=============  ===========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagerouter.eventloop import helper_thread
from imagerouter.storage.base import Storage, StorageError, extension_for
from imagerouter.storage.config import MAX_URL_TTL_S, StorageSettings
from imagerouter.storage.local import MEDIA_PREFIX, LocalStorage, load_signing_key
from imagerouter.storage.outputs import OutputStore, present_result
from imagerouter.storage.s3 import S3Storage

__all__ = [
    "MAX_URL_TTL_S",
    "MEDIA_PREFIX",
    "LocalStorage",
    "OutputStore",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageSettings",
    "extension_for",
    "load_signing_key",
    "open_storage",
    "present_result",
]


@contextlib.asynccontextmanager
async def open_storage(
    settings: StorageSettings, data_dir: Path, *, base_url: str | None = None
) -> AsyncIterator[Storage | None]:
    """The configured backend (None for ``none``) with its bounded thread pool, shut down on
    exit. ``base_url`` makes local URLs absolute."""
    if settings.backend == "none":
        yield None
        return
    executor = ThreadPoolExecutor(
        max_workers=settings.threads, thread_name_prefix="storage", initializer=helper_thread
    )
    try:
        if settings.backend == "s3":
            async with S3Storage(settings, executor) as s3:
                yield s3
        else:
            root = settings.directory or data_dir / "media"
            key = await asyncio.to_thread(load_signing_key, data_dir)
            yield LocalStorage(root, key, executor, base_url=base_url)
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
