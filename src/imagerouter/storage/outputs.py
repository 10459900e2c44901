"""Re-hosting a finished job's images, and showing stored results with fresh URLs.

The worker calls :class:`OutputStore` after the router returns and before the job is marked
completed: each image is taken from its inline base64 or downloaded from the provider's URL
(size and time capped; provider URLs are not webhook targets, so no SSRF filter applies), then
stored under :func:`output_key`. The result records the keys under ``storage``, so that
:func:`present_result` can sign a fresh URL each time the result is shown (job reads, webhooks)
while the stored URL stays usable for ``url_ttl_s``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import aiohttp

from imagerouter.jobs.types import Job
from imagerouter.storage.base import (
    SIGNATURE_BYTES,
    ProviderOutputError,
    Storage,
    StorageError,
    extension_for,
    media_type_of,
)
from imagerouter.storage.config import StorageSettings
from imagerouter.transport import BodyTooLarge, HttpPool, ProtocolError

__all__ = ["OutputStore", "output_key", "present_result"]

SessionGetter = Callable[[], aiohttp.ClientSession]
PoolGetter = Callable[[], HttpPool | None]
_CHUNK = 64 * 1024
#: A download larger than this (or of unknown length) is streamed into the storage.
STREAM_ABOVE_BYTES = 4 * 1024 * 1024
#: Redirects an image download follows (a provider's CDN may answer one).
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def output_key(job: Job, index: int, content_type: str) -> str:
    """Where output ``index`` of ``job`` is kept: ``<UTC day>/<hour>/<job id>-<index>.<ext>``,
    by the hour the job was created (e.g. ``2026-12-05/14/job_…-0.png``).

    One file per output in a directory per hour, rather than a directory per job: on local
    disk a directory is a second inode to create for every job, and time buckets let an
    operator expire old outputs by prefix (``rm -r`` of a day, an S3 lifecycle rule). Keys
    written under the earlier ``<job id>/<index>.<ext>`` stay valid: a result records its keys.
    """
    hour = time.strftime("%Y-%m-%d/%H", time.gmtime(job.created_at))
    return f"{hour}/{job.id}-{index}.{extension_for(content_type)}"


class OutputStore:
    """Stores a result's images in ``storage`` and rewrites their URLs.

    Args:
        storage: the backend.
        session: returns the HTTP session provider URLs are streamed from (the router's,
            which trusts the mock farm's test CA).
        settings: URL lifetime, download caps, whether inline base64 is kept.
        http: returns the router's lean pool (or None): an image is read whole through it,
            at a third of the session's CPU, and only a video, or an image found larger than
            ``STREAM_ABOVE_BYTES``, is streamed through the session.
    """

    def __init__(
        self,
        storage: Storage,
        session: SessionGetter,
        settings: StorageSettings,
        *,
        http: PoolGetter | None = None,
    ) -> None:
        self.storage = storage
        self._session = session
        self._settings = settings
        self._http = http

    async def __call__(
        self,
        job: Job,
        result: dict[str, Any],
        started: list[str] | None = None,
        time_left_s: float | None = None,
    ) -> dict[str, Any]:
        """``result`` with every image stored and its URL replaced (StorageError on failure,
        raised once no image of the result is still being stored; ProviderOutputError when
        the provider's side of it failed). ``started`` gets each key as its write begins, so
        that a caller whose job ends otherwise (failed, or canceled meanwhile) can
        :meth:`discard` what was stored. Every download ends within ``time_left_s`` (the
        job's deadline) as well as within its own timeout."""
        images = list(result.get("images") or [])
        started = [] if started is None else started
        by = None if time_left_s is None else time.monotonic() + time_left_s
        if len(images) == 1:  # the usual case: no task to gather one download
            stored = [await self._store(job, 0, images[0], started, by)]
        else:
            outcomes = await asyncio.gather(
                *(
                    self._store(job, index, image, started, by)
                    for index, image in enumerate(images)
                ),
                return_exceptions=True,
            )
            stored = []
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                stored.append(outcome)
        ttl = self._settings.url_ttl_s
        out = []
        for image, (key, content_type) in zip(images, stored, strict=True):
            shown = {**image, "url": self.storage.url(key, ttl), "content_type": content_type}
            if not self._settings.keep_inline:
                shown.pop("b64_json", None)
            out.append(shown)
        keys = [key for key, _ in stored]
        return {**result, "images": out, "storage": {"backend": self.storage.name, "keys": keys}}

    async def discard(self, keys: list[str]) -> None:
        """Remove what was stored under ``keys`` (StorageError if the backend could not)."""
        if keys:
            await self.storage.delete(keys)

    async def _store(
        self, job: Job, index: int, image: dict[str, Any], started: list[str], by: float | None
    ) -> tuple[str, str]:
        content_type = image.get("content_type") or "image/png"
        if image.get("b64_json"):
            try:
                data = base64.b64decode(image["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise ProviderOutputError(
                    f"image {index}: the provider's base64 is invalid"
                ) from None
            if len(data) > self._settings.max_download_bytes:
                raise StorageError(f"image {index} is larger than max_download_bytes")
            _check_media(index, data, content_type)
        elif image.get("url"):
            return await self._fetch(job, index, image["url"], content_type, started, by)
        else:
            raise ProviderOutputError(f"image {index} has neither a URL nor base64 data")
        key = output_key(job, index, content_type)
        started.append(key)
        await self.storage.put(key, data, content_type)
        return key, content_type

    async def _fetch(
        self,
        job: Job,
        index: int,
        url: str,
        content_type: str,
        started: list[str],
        by: float | None,
    ) -> tuple[str, str]:
        """Download ``url`` into the storage: an image into memory and then ``put`` (small,
        batched writes), a video (or anything large or of unknown length) streamed chunk by
        chunk through ``put_stream``, so memory per job stays at a few chunks. One download
        timeout covers both ways, when an image goes the second, and none lasts past ``by``
        (monotonic; the job's deadline)."""
        pool = self._http() if self._http is not None else None
        video = content_type.startswith("video/")
        settings = self._settings
        own_s = settings.video_download_timeout_s if video else settings.download_timeout_s
        now = time.monotonic()
        deadline = now + own_s if by is None else min(now + own_s, by)
        if deadline <= now:
            raise ProviderOutputError(f"output {index}: no time left to download it")
        timeout_s: float | None = None if by is None else deadline - now
        if pool is not None and not video:
            small = await self._read_small(pool, index, url, deadline)
            if small is not None:
                kind, data = small
                _check_media(index, data, kind or content_type)
                content_type = kind or content_type
                key = output_key(job, index, content_type)
                started.append(key)
                await self.storage.put(key, data, content_type)
                return key, content_type
            timeout_s = deadline - time.monotonic()
            if timeout_s <= 0:
                raise ProviderOutputError(f"output {index}: download failed: timed out")
        return await self._stream(job, index, url, content_type, started, timeout_s)

    async def _read_small(
        self, pool: HttpPool, index: int, url: str, deadline: float
    ) -> tuple[str | None, bytes] | None:
        """The answer's media type (when image or video) and body, read whole through the
        lean pool (following redirects) by ``deadline`` (monotonic) if it is at most
        ``STREAM_ABOVE_BYTES``; None when it is larger, or when the lean client cannot take
        the URL or read the answer (credentials in the URL, bytes its parser refuses): the
        caller then streams it through the session, as every download went before."""
        limit = self._settings.max_download_bytes
        try:
            for _ in range(MAX_REDIRECTS + 1):
                answer = await pool.request(
                    "GET",
                    url,
                    timeout_s=max(0.001, deadline - time.monotonic()),
                    max_body_bytes=min(limit, STREAM_ABOVE_BYTES),
                )
                location = answer.headers.get("Location")
                if answer.status not in _REDIRECTS or not location:
                    break
                url = urljoin(url, location)
            else:
                raise ProviderOutputError(f"output {index}: more than {MAX_REDIRECTS} redirects")
        except BodyTooLarge:
            if limit <= STREAM_ABOVE_BYTES:
                raise StorageError(f"output {index} is larger than {limit} bytes") from None
            return None
        except (ProtocolError, ValueError):
            return None
        except (OSError, TimeoutError) as exc:
            raise ProviderOutputError(f"output {index}: download failed: {exc!r}") from exc
        if answer.status != 200:
            raise ProviderOutputError(
                f"output {index}: the provider's URL answered {answer.status}"
            )
        return _media_type(answer.headers), answer.body

    async def _stream(
        self,
        job: Job,
        index: int,
        url: str,
        content_type: str,
        started: list[str],
        timeout_s: float | None = None,
    ) -> tuple[str, str]:
        """:meth:`_fetch` through the session: chunk by chunk for a video, or an answer
        larger than ``STREAM_ABOVE_BYTES`` or of unknown length; ``timeout_s`` is what is
        left of the download's time (None: the whole of it)."""
        settings = self._settings
        video = content_type.startswith("video/")
        limit = settings.max_video_bytes if video else settings.max_download_bytes
        if timeout_s is None:
            timeout_s = settings.video_download_timeout_s if video else settings.download_timeout_s
        data: bytes | None = None
        try:
            async with self._session().get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as answer:
                if answer.status != 200:
                    status = answer.status
                    raise ProviderOutputError(
                        f"output {index}: the provider's URL answered {status}"
                    )
                kind = _media_type(answer.headers)
                content_type = kind or content_type
                if kind is not None and kind.startswith("video/") and not video:
                    video, limit = True, settings.max_video_bytes
                length = answer.content_length
                if length is not None and length > limit:
                    raise StorageError(f"output {index} is larger than {limit} bytes")
                key = output_key(job, index, content_type)
                chunks = _checked(_capped(answer, index, limit), index, content_type)
                if video or length is None or length > STREAM_ABOVE_BYTES:
                    started.append(key)
                    await self.storage.put_stream(key, chunks, content_type)
                else:
                    data = b"".join([chunk async for chunk in chunks])
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderOutputError(f"output {index}: download failed: {exc!r}") from exc
        if data is not None:
            started.append(key)
            await self.storage.put(key, data, content_type)
        return key, content_type


def _media_type(headers: Mapping[str, str]) -> str | None:
    """The answer's ``Content-Type`` without parameters, when it names an image or a video."""
    kind = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return kind if kind.startswith(("image/", "video/")) else None


async def _capped(answer: aiohttp.ClientResponse, index: int, limit: int) -> AsyncIterator[bytes]:
    """The answer's body in chunks; StorageError once it passes ``limit`` bytes (our limit,
    which another provider's output would pass as well: no reason to fail over)."""
    size = 0
    async for chunk in answer.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise StorageError(f"output {index} is larger than {limit} bytes")
        yield chunk


async def _checked(
    chunks: AsyncIterator[bytes], index: int, content_type: str
) -> AsyncIterator[bytes]:
    """``chunks``, once their first bytes are seen to be an image or a video
    (:func:`_check_media`); nothing is passed on before."""
    head: bytes | None = b""
    async for chunk in chunks:
        if head is not None:
            head += chunk
            if len(head) < SIGNATURE_BYTES:
                continue
            _check_media(index, head, content_type)
            chunk, head = head, None
        yield chunk
    if head is not None:  # the whole answer shorter than a signature
        _check_media(index, head, content_type)
        yield head


def _check_media(index: int, data: bytes, content_type: str) -> None:
    """Raise ProviderOutputError unless ``data`` begins as an image or a video does: a
    provider's error page or empty body served as ``image/png`` is no output to keep."""
    if media_type_of(data[:SIGNATURE_BYTES]) is None:
        raise ProviderOutputError(
            f"output {index} is not an image or a video: {len(data)} bytes served as "
            f"{content_type}, beginning {data[:16]!r}"
        )


def present_result(
    storage: Storage | None, result: dict[str, Any] | None, ttl_s: float
) -> dict[str, Any] | None:
    """The result as a client sees it: ``storage`` bookkeeping removed and, when the images
    are in the configured backend, their URLs freshly signed for ``ttl_s`` seconds."""
    if result is None or "storage" not in result:
        return result
    shown = {k: v for k, v in result.items() if k != "storage"}
    record = result["storage"] or {}
    keys = record.get("keys") or []
    images = result.get("images") or []
    if storage is None or record.get("backend") != storage.name or len(keys) != len(images):
        return shown
    shown["images"] = [
        {**image, "url": storage.url(key, ttl_s)} for image, key in zip(images, keys, strict=True)
    ]
    return shown
