"""Local-disk output storage: files under the data dir, served under signed, expiring URLs.

A URL reads ``/v1/media/<key>?expires=<unix s>&sig=<hex>``, where ``sig`` is HMAC-SHA256 of
``"<path>\\n<expires>"`` under a server secret kept in the data dir (``media-signing.key``,
created on first start, mode 0600). The media route checks it in constant time and answers 403
when it is wrong or expired, so a URL can be handed to anyone and still cannot be altered to
reach another file or to live longer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from concurrent.futures import Executor
from pathlib import Path
from urllib.parse import quote

from imagerouter.private import FILE_MODE, private_dir, tighten
from imagerouter.storage.base import StorageError

__all__ = ["MEDIA_PREFIX", "LocalStorage", "load_signing_key"]

MEDIA_PREFIX = "/v1/media/"
KEY_FILE = "media-signing.key"
_KEY = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


def load_signing_key(data_dir: Path) -> bytes:
    """The server's URL-signing secret from ``data_dir`` (kept 0700), created (0600) if
    missing, tightened to 0600 if found looser."""
    path = data_dir / KEY_FILE
    private_dir(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path, FILE_MODE)
        for _ in range(50):  # another process may be writing it right now
            text = path.read_text().strip()
            if len(text) == 64:
                return bytes.fromhex(text)
            time.sleep(0.01)
        raise StorageError(f"{path} does not hold a 32-byte hex key") from None
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class LocalStorage:
    """:class:`~imagerouter.storage.base.Storage` on a directory.

    Args:
        root: where files go (created).
        signing_key: the server secret URLs are signed with.
        executor: the bounded pool that runs file writes and reads.
        base_url: prefix for absolute URLs (the server's ``public_url``); relative without.
        clock: unix seconds (for tests).
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        signing_key: bytes,
        executor: Executor,
        *,
        base_url: str | None = None,
        clock=time.time,
    ) -> None:
        self.root = root
        self._key = signing_key
        self._executor = executor
        self._base = (base_url or "").rstrip("/")
        self._clock = clock
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key``; ValueError for a key that could leave the root."""
        if not _KEY.match(key) or len(key) > 512:
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write the file atomically (a temporary file renamed into place)."""
        path = self.path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, write)
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        """The file's bytes."""
        path = self.path(key)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, path.read_bytes)
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def _signature(self, key: str, expires: int) -> str:
        message = f"{MEDIA_PREFIX}{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, key: str, expires_in_s: float) -> str:
        """``/v1/media/<key>?expires=…&sig=…`` (absolute with a base URL)."""
        self.path(key)
        expires = int(self._clock() + expires_in_s)
        sig = self._signature(key, expires)
        return f"{self._base}{MEDIA_PREFIX}{quote(key)}?expires={expires}&sig={sig}"

    def verify_signature(self, key: str, expires: str | None, sig: str | None) -> bool:
        """True if ``sig`` signs ``key`` and ``expires`` (compared in constant time), whether
        or not that time has passed."""
        if not expires or not sig or not expires.isdigit() or len(expires) > 12:
            return False
        expected = self._signature(key, int(expires))
        return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace"))

    def verify(self, key: str, expires: str | None, sig: str | None) -> bool:
        """True if ``sig`` signs ``key`` until ``expires`` and that time has not passed."""
        return self.verify_signature(key, expires, sig) and int(expires or 0) >= self._clock()
