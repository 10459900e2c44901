"""The seam for provider APIs: an adapter describes one wire format and nothing else.

An adapter says which routes it serves (and which of them are *generation* requests), how to
read the API key, and how to render a success or an error in its provider's shape. Everything
else (``down``, the token bucket, the random faults, latency and generation time, phases,
Retry-After windows, stats, the image host) is applied to every adapter by the farm.

A fourth provider is one small class::

    class AcmeAPI(FarmAdapter):
        name, prefix = "acme", "/acme"

        def routes(self):
            return [FarmRoute("POST", "/v1/generate", self.generate, generation=True)]

        async def generate(self, call: Call) -> web.StreamResponse:
            if call.content_policy:
                return web.json_response({"error": "nsfw"}, status=400)
            await call.generate()                    # waits generation_ms
            image = call.images(call.body["prompt"], None, 512, 512, 1)[0]
            return web.json_response({"url": image.url})

        def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
            return web.json_response({"error": error.message}, status=error.status)

    Farm(adapters=[AcmeAPI()])
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from aiohttp import web

from imagerouter.clock import Clock
from mockproviders.bucket import BucketState
from mockproviders.images import image_digest
from mockproviders.jobs import FarmJob, FarmJobs
from mockproviders.media import media_path
from mockproviders.mp4 import FarmVideo, video_digest
from mockproviders.pngcache import PngCache
from mockproviders.profile import FaultProfile
from mockproviders.scenario import VideoSettings
from mockproviders.videos import video_path

__all__ = [
    "Call",
    "ErrorKind",
    "FarmAdapter",
    "FarmError",
    "FarmImage",
    "FarmRoute",
    "Handler",
    "auth_token",
]


class ErrorKind(StrEnum):
    """The errors the farm itself answers; the adapter renders each in its own shape."""

    #: The provider is ``down``: 503.
    UNAVAILABLE = "unavailable"
    #: A random 500, 502 or 503.
    SERVER_ERROR = "server_error"
    #: 429, from the token bucket or a random one.
    RATE_LIMITED = "rate_limited"
    #: 401: a random one, or the request carried no API key.
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class FarmError:
    """An error the farm decided on, before the adapter gives it the provider's shape."""

    kind: ErrorKind
    status: int
    message: str
    #: For 429s: the seconds the client is asked to wait (None when no header is sent).
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class FarmImage:
    """One generated image: its URL on the farm, the requested size and its digest."""

    url: str
    width: int
    height: int
    digest: str
    #: The farm's image cache, which decides the bytes (the scenario's ``[images]``).
    pngs: PngCache = field(repr=False, compare=False)

    def png(self) -> bytes:
        """The PNG bytes: exactly ``width`` x ``height``, as big as the scenario says."""
        return self.pngs.png(self.digest, self.width, self.height)


@dataclass(slots=True)
class Call:
    """One request as the farm hands it to an adapter's handler."""

    request: web.Request
    #: The provider (adapter) name.
    provider: str
    #: The API key the adapter read from the request (None only on error paths).
    key: str | None
    #: The effective fault profile for this request.
    profile: FaultProfile
    #: Monotonic time the request arrived.
    started: float
    #: This provider's queued jobs.
    jobs: FarmJobs
    #: The farm's clock.
    clock: Clock
    #: The farm's generated images.
    pngs: PngCache
    #: The JSON body of a generation request; None when absent or not JSON.
    body: Any = None
    #: The engine decided the provider's moderation rejects this generation.
    content_policy: bool = False
    #: Seconds this generation takes (drawn from ``generation_ms``).
    generation_s: float = 0.0
    #: The key's token bucket, when the profile has a rate limit.
    bucket: BucketState | None = None
    #: Headers the pipeline wants on the answer, whatever the adapter renders.
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: How big the farm's videos are.
    videos: VideoSettings = field(default_factory=VideoSettings)

    @property
    def origin(self) -> str:
        """``scheme://host:port`` as the client reached the farm."""
        return f"{self.request.scheme}://{self.request.host}"

    def elapsed_ms(self) -> int:
        """Milliseconds since the request arrived."""
        return max(0, round((self.clock.now() - self.started) * 1000))

    def submit_job(self, app: str, data: dict[str, Any]) -> FarmJob:
        """Queue this generation (a queue API's submit): its generation time, moderation
        verdict, and the queue ahead of it, as the fault profile says."""
        return self.jobs.submit(
            app,
            self.generation_s,
            content_policy=self.content_policy,
            data=data,
            queue_depth=self.profile.queue_depth,
            queued_share=self.profile.queued_share,
        )

    def take_video_time(self, key: str) -> None:
        """This is a video generation: draw its time from the profile's
        ``video_generation_ms`` (seeded by ``key`` and the profile's seed, so the same request
        takes the same time); without one it keeps the ``generation_ms`` draw."""
        dist = self.profile.video_generation_ms
        if dist is not None:
            rng = random.Random(f"{self.profile.seed}\x00{key}")
            self.generation_s = dist.sample_ms(rng) / 1000

    def video(
        self, prompt: str, seed: int | None, width: int, height: int, seconds: int
    ) -> tuple[str, FarmVideo]:
        """The URL and file of the deterministic video for this prompt, seed, size and
        length, as big as the scenario's ``[videos]`` says."""
        digest = video_digest(prompt, seed, width, height, seconds)
        target = seconds * self.videos.bytes_per_second
        video = FarmVideo(digest, width, height, seconds, target)
        return self.origin + video_path(digest, width, height, seconds, target), video

    async def generate(self) -> None:
        """Take the generation time, as a synchronous API does before it answers."""
        if self.generation_s > 0:
            await asyncio.sleep(self.generation_s)

    def images(
        self, prompt: str, seed: int | None, width: int, height: int, count: int
    ) -> list[FarmImage]:
        """``count`` deterministic images for this prompt, seed and requested size."""
        images = []
        for index in range(count):
            digest = image_digest(prompt, seed, width, height, index)
            url = self.origin + media_path(digest, width, height)
            images.append(
                FarmImage(url=url, width=width, height=height, digest=digest, pngs=self.pngs)
            )
        return images


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class FarmRoute:
    """One route of an adapter, relative to its prefix."""

    method: str
    #: aiohttp route path under the adapter's prefix, e.g. ``"/v1/images/generations"``.
    path: str
    handler: Handler
    #: Generation requests get the whole fault pipeline; the others (polls) only ``down``.
    generation: bool = False


class FarmAdapter(abc.ABC):
    """The wire format of one provider API: routes, key, request fields, body shapes."""

    #: The provider's name in scenario files, ``/_farm/providers`` and ``/_farm/stats``.
    name: ClassVar[str]
    #: The path prefix every route of this adapter lives under, e.g. ``"/acme"``.
    prefix: ClassVar[str]
    #: What the SDK's base URL adds to ``farm_url + prefix`` (e.g. ``"/v1"``).
    sdk_path: ClassVar[str] = ""
    #: Send ``retry-after-ms`` (exact) beside ``retry-after`` on 429s.
    retry_after_ms: ClassVar[bool] = False
    #: Send the key's request budget, ``x-ratelimit-{limit,remaining,reset}-requests``, on
    #: every answer when the profile has a rate limit (see :meth:`BucketState.headers`).
    budget_headers: ClassVar[bool] = False
    #: The provider's SDK speaks only https: it reaches the farm only in TLS mode.
    https_only: ClassVar[bool] = False

    @abc.abstractmethod
    def routes(self) -> Sequence[FarmRoute]:
        """Every route this API serves."""

    @abc.abstractmethod
    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """Render an error the farm decided on in this provider's shape."""

    def api_key(self, request: web.Request) -> str | None:
        """The API key of a request; by default ``Authorization: Bearer <key>``."""
        return auth_token(request, "Bearer")

    def decorate(self, response: web.StreamResponse, call: Call) -> None:  # noqa: B027
        """Add headers this provider puts on every answer (none by default)."""

    def base_url(self, farm_url: str) -> str:
        """The base URL to give this provider's SDK."""
        return f"{farm_url}{self.prefix}{self.sdk_path}"

    def describe(self, farm_url: str) -> dict[str, Any]:
        """What ``GET /_farm/providers`` says about how to reach this API."""
        return {"base_url": self.base_url(farm_url)}

    def sdk_environment(self, farm_url: str) -> dict[str, str]:
        """Environment variables that point the provider's unchanged SDK at the farm, for an
        SDK configured by environment rather than by a base URL (none by default)."""
        return {}


def auth_token(request: web.Request, scheme: str) -> str | None:
    """The token of ``Authorization: <scheme> <token>`` (case-insensitive scheme), or None."""
    header = request.headers.get("Authorization", "")
    given, _, token = header.partition(" ")
    token = token.strip()
    if given.lower() != scheme.lower() or not token:
        return None
    return token
