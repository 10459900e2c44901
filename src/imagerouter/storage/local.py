"""Local-disk output storage: files under the data dir, served under signed, expiring URLs.

A URL reads ``/v1/media/<key>?expires=<unix s>&sig=<hex>``, where ``sig`` is HMAC-SHA256 of
``"<path>\\n<expires>"`` under a server secret kept in the data dir (``media-signing.key``,
created on first start, mode 0600). The media route checks it in constant time and answers 403
when it is wrong or expired, so a URL can be handed to anyone and still cannot be altered to
reach another file or to live longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import Executor
from pathlib import Path

from imagerouter.private import FILE_MODE, private_dir, tighten
from imagerouter.storage.base import StorageError
from imagerouter.storage.inflight import WritesInFlight
from imagerouter.storage.spool import create_new, spool, write_all

__all__ = ["MEDIA_PREFIX", "FileWriter", "LocalStorage", "load_signing_key"]

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


#: Write batches in flight at once, and files per batch (see :meth:`LocalStorage.put`).
_WRITERS = 2
_BATCH = 64


#: ``open`` flags of an unnamed file in a directory (Linux's ``O_TMPFILE``; 0 elsewhere).
_UNNAMED = getattr(os, "O_TMPFILE", 0)
#: What ``open`` answers where unnamed files cannot be made: a filesystem without them
#: (``EOPNOTSUPP``, or ``EINVAL`` from some), a kernel before 3.11 (``EISDIR``). Without
#: ``/proc`` to name one through, ``link`` answers ``ENOENT``.
_NO_UNNAMED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


def _beside(path: str) -> str:
    """A new temporary file's name beside ``path`` (hidden, unique), to be renamed to it."""
    folder, name = os.path.split(path)
    return f"{folder}/.{name}.{secrets.token_hex(4)}.tmp"


def _write_named(path: str, data: bytes) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place (replacing)."""
    tmp = _beside(path)
    try:
        fd = create_new(tmp)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_unnamed(path: str, data: bytes) -> bool:
    """Write ``path`` as an unnamed file in its directory, given its name once whole; False
    where unnamed files are not to be had (nothing written). One directory entry made, where
    the temporary file and its rename make two and remove one: 28 against 38 µs of CPU for a
    small image on ext4. ``FileExistsError`` when ``path`` exists (a job's rerun)."""
    folder = os.path.dirname(path)
    flags = _UNNAMED | os.O_WRONLY | os.O_CLOEXEC
    try:
        try:
            fd = os.open(folder, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(folder, flags, 0o666)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED:
            return False
        raise
    try:
        write_all(fd, data)
        # linkat(2) with AT_SYMLINK_FOLLOW through /proc, as open(2) documents for O_TMPFILE
        # (os.link calls linkat only when given a directory fd; one for an absolute path is
        # never used)
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
    except FileNotFoundError:
        if os.path.isdir("/proc/self/fd"):
            raise
        return False
    finally:
        os.close(fd)
    return True


class FileWriter:
    """The blocking half of :meth:`LocalStorage.put`, run in its pool: writes files
    atomically, each appearing whole under its name or not at all, replacing what was there.

    Attributes:
        unnamed: whether files are written unnamed and then named (:func:`_write_unnamed`);
            turned off at the first write where the filesystem cannot, and files then go
            through a temporary file renamed into place.
    """

    def __init__(self) -> None:
        self.unnamed = bool(_UNNAMED)

    def write(self, files: list[tuple[str, bytes]]) -> list[OSError | None]:
        """Write each ``(path, data)``; each one's error or None. Paths are strings here:
        pathlib's objects cost more than the writes of a small image."""
        errors: list[OSError | None] = []
        for path, data in files:
            try:
                try:
                    written = self.unnamed and _write_unnamed(path, data)
                except FileExistsError:  # written before (a job's rerun): replace it
                    written = False
                else:
                    if not written:
                        self.unnamed = False
                if not written:
                    _write_named(path, data)
            except OSError as exc:
                errors.append(exc)
            else:
                errors.append(None)
        return errors


def _unlink_all(paths: list[str]) -> tuple[int, OSError] | None:
    """Unlink every path there is; the index and error of the first that would not go."""
    failed: tuple[int, OSError] | None = None
    for index, path in enumerate(paths):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed = failed or (index, exc)
    return failed


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
        # keyed once and copied per URL: ``hmac.digest`` looks the hash up by name each call
        # and lets go of the GIL around it, which on a busy server hands the loop's turn to
        # another thread for a 2 µs hash
        self._mac = hmac.new(signing_key, digestmod=hashlib.sha256)
        self._executor = executor
        self._base = (base_url or "").rstrip("/")
        self._clock = clock
        self._root = str(root)
        #: What writes the files, in the pool.
        self.files = FileWriter()
        #: The keys whose files the pool is writing now (:meth:`delete` waits for them).
        self.writes = WritesInFlight()
        #: Writes waiting for a writer: key, file, bytes, and the future ``put`` awaits.
        self._pending: list[tuple[str, str, bytes, asyncio.Future[BaseException | None]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key``; ValueError for a key that could leave the root."""
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """:meth:`path` as a string."""
        if not _KEY.match(key) or len(key) > 512:
            raise ValueError(f"invalid storage key {key!r}")
        return f"{self._root}/{key}"

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write the file atomically: it appears whole under its name or not at all
        (:class:`FileWriter`).

        Writes queue up and go to the pool in batches (at most ``_WRITERS`` batches in flight):
        under load one thread hand-off carries many files instead of one each, which on a busy
        core costs more than the writes themselves. A write whose caller was cancelled before
        a writer took it is not made."""
        path = self._file(key)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        self._pending.append((key, path, data, done))
        if len(self._writers) < _WRITERS:
            self._writers.add(loop.create_task(self._write_pending()))
        error = await done
        if isinstance(error, OSError):
            raise StorageError(f"could not write {key}: {error}") from error
        if error is not None:
            raise error

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        """Spool the chunks into a temporary file beside the final one (each write in the
        pool), then rename it into place: a failed or cut stream leaves nothing behind."""
        path = self._file(key)
        tmp = _beside(path)
        try:
            size = await spool(chunks, Path(tmp), self._executor)
            named = self._executor.submit(os.replace, tmp, path)
            self.writes.track([key], named)
            await asyncio.wrap_future(named)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"could not write {key}: {exc}") from exc
        return size

    async def flush(self) -> None:
        """Wait until every write queued so far has been made (or, its caller gone, left
        out)."""
        while self._writers:
            await asyncio.wait(set(self._writers))

    async def _write_pending(self) -> None:
        """Write what is pending, batch after batch, until nothing is; a writer leaves the
        set in the same step as it last finds nothing pending, so that a write queued after
        that always starts a new one."""
        try:
            await self._write_batches()
        finally:
            self._writers.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _write_batches(self) -> None:
        while self._pending:
            # a write whose caller is gone (a canceled job) is left out
            batch = [entry for entry in self._pending[:_BATCH] if not entry[3].cancelled()]
            del self._pending[:_BATCH]
            if not batch:
                continue
            try:
                work = self._executor.submit(self.files.write, [(p, d) for _, p, d, _ in batch])
                self.writes.track([key for key, _, _, _ in batch], work)
                errors: list[BaseException | None] = await asyncio.wrap_future(work)
            except asyncio.CancelledError:  # shutting down: no write waits for a writer
                rest, self._pending = self._pending, []
                for _, _, _, done in (*batch, *rest):
                    done.cancel()
                raise
            except Exception as exc:  # the pool is shut down: every write of the batch fails
                errors = [exc] * len(batch)
            for (_, _, _, done), error in zip(batch, errors, strict=True):
                if not done.done():
                    done.set_result(error)

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove the files of ``keys`` (:meth:`Storage.delete
        <imagerouter.storage.base.Storage.delete>`): once the pool's writes of them have
        ended, unlinked in the pool; StorageError naming the first that could not be."""
        paths = [self._file(key) for key in keys]
        await self.writes.settle(keys)
        loop = asyncio.get_running_loop()
        failed = await loop.run_in_executor(self._executor, _unlink_all, paths)
        if failed is not None:
            index, error = failed
            raise StorageError(f"could not delete {keys[index]}: {error}") from error

    async def get(self, key: str) -> bytes:
        """The file's bytes."""
        path = self.path(key)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, path.read_bytes)
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def _signature(self, key: str, expires: int) -> str:
        mac = self._mac.copy()
        mac.update(f"{MEDIA_PREFIX}{key}\n{expires}".encode())
        return mac.hexdigest()

    def url(self, key: str, expires_in_s: float) -> str:
        """``/v1/media/<key>?expires=…&sig=…`` (absolute with a base URL)."""
        self._file(key)  # a key that could leave the root is a ValueError
        expires = int(self._clock() + expires_in_s)
        sig = self._signature(key, expires)
        # a valid key's characters are all URL-safe: it goes into the URL as it is
        return f"{self._base}{MEDIA_PREFIX}{key}?expires={expires}&sig={sig}"

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
