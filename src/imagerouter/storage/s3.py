"""S3-compatible output storage through boto3 (AWS S3, R2, SeaweedFS, MinIO…).

boto3 is synchronous, so every call that can touch the network (creating the client, which may
fetch credentials; ``put_object``; ``get_object``) runs in the bounded thread pool handed in.
``generate_presigned_url`` is a local computation (a SigV4 signature) and runs inline. The
client is thread-safe, so one serves the whole pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterable, Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

from imagerouter.extras import require
from imagerouter.lifecycle import AsyncResource
from imagerouter.storage.base import StorageError
from imagerouter.storage.config import MAX_URL_TTL_S, StorageSettings
from imagerouter.storage.inflight import WritesInFlight
from imagerouter.storage.spool import spool

__all__ = ["S3Storage"]

T = TypeVar("T")
#: Multipart upload above this size, in parts of this size (S3's least part is 5 MiB).
MULTIPART_BYTES = 8 * 1024 * 1024


class S3Storage(AsyncResource):
    """:class:`~imagerouter.storage.base.Storage` on an S3 bucket, with presigned GET URLs.

    Use it with ``async with`` (:meth:`start` builds the client in the pool; the pool is the
    caller's, so there is nothing else to close).
    """

    name = "s3"

    def __init__(self, settings: StorageSettings, executor: Executor) -> None:
        require("s3", "S3 output storage")
        assert settings.bucket
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._settings = settings
        self._executor = executor
        self._client: Any = None
        #: The keys whose uploads the pool is running now (:meth:`delete` waits for them).
        self.writes = WritesInFlight()

    def _build_client(self) -> Any:
        import boto3  # heavy; only when the backend is S3
        from botocore.config import Config

        s = self._settings
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": s.addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=s.endpoint_url,
            region_name=s.region or "us-east-1",
            aws_access_key_id=s.access_key_id.get_secret_value() if s.access_key_id else None,
            aws_secret_access_key=(
                s.secret_access_key.get_secret_value() if s.secret_access_key else None
            ),
            config=config,
        )

    async def _run(self, fn: Callable[[], T], what: str, writes: Sequence[str] = ()) -> T:
        """``fn`` in the pool; ``writes``: the keys it uploads, tracked until it ends."""
        try:
            work = self._executor.submit(fn)
            if writes:
                self.writes.track(writes, work)
            return await asyncio.wrap_future(work)
        except StorageError:
            raise
        except Exception as exc:  # botocore's errors have no common public root
            raise StorageError(f"S3 {what} failed: {type(exc).__name__}: {exc}") from exc

    async def start(self) -> None:
        """Build the client in the pool (it may read credentials from the environment)."""
        self._client = await self._run(self._build_client, "client setup")

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """``put_object`` in the pool."""
        await self._run(
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            ),
            f"upload of {key}",
            [key],
        )

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        """Spool the chunks to a temporary file, then ``upload_file`` it in the pool through
        boto3's transfer manager: a multipart upload above :data:`MULTIPART_BYTES`, whose
        parts are read from the file, so the video is never in memory whole."""
        from boto3.s3.transfer import TransferConfig

        tmp = Path(tempfile.gettempdir()) / f"imagerouter-{secrets.token_hex(8)}.part"
        config = TransferConfig(
            multipart_threshold=MULTIPART_BYTES,
            multipart_chunksize=MULTIPART_BYTES,
            max_concurrency=2,
        )
        try:
            try:
                size = await spool(chunks, tmp, self._executor)
            except OSError as exc:
                raise StorageError(f"could not spool {key}: {exc}") from exc
            await self._run(
                lambda: self._client.upload_file(
                    str(tmp),
                    self.bucket,
                    self._key(key),
                    ExtraArgs={"ContentType": content_type},
                    Config=config,
                ),
                f"upload of {key}",
                [key],
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return size

    async def delete(self, keys: Sequence[str]) -> None:
        """``delete_object`` of each key in the pool, once the pool's uploads of them have
        ended (:meth:`Storage.delete <imagerouter.storage.base.Storage.delete>`; one call a
        key rather than ``DeleteObjects``, which not every S3-compatible store takes)."""
        await self.writes.settle(keys)

        def remove() -> None:
            for key in keys:
                self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

        if keys:
            await self._run(remove, f"delete of {', '.join(keys)}")

    async def get(self, key: str) -> bytes:
        """``get_object`` in the pool."""

        def read() -> bytes:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return answer["Body"].read()

        return await self._run(read, f"download of {key}")

    def url(self, key: str, expires_in_s: float) -> str:
        """A presigned GET URL (SigV4, at most 7 days)."""
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=int(min(expires_in_s, MAX_URL_TTL_S)),
        )
