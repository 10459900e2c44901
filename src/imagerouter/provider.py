"""The base class a provider plugin implements.

A plugin declares who it is in class attributes, maps the unified request to its wire format in
one ``async def generate()``, and classifies failures once (``classify``). The HTTP plumbing it
shares with every other plugin lives here: the core's pooled connections (a lean keep-alive
HTTP/1.1 pool, :class:`imagerouter.transport.HttpPool`, for the JSON calls, and an
``aiohttp.ClientSession`` for anything else a plugin needs) handed in through
:class:`CallContext`, deadlines, transport-error mapping, JSON parsing and queue polling with a
growing interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.errors import (
    AuthFailed,
    InvalidRequest,
    ModelNotServed,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.generation import ImageRequest, ProviderOutput
from imagerouter.jsontext import dump_bytes, loads
from imagerouter.resilience.headers import (
    RateLimitBudget,
    parse_rate_limit_budget,
    parse_retry_after,
)
from imagerouter.transport import HttpPool

__all__ = [
    "CallContext",
    "HttpAnswer",
    "Progress",
    "ProgressListener",
    "Provider",
    "ProviderOptions",
]

logger = logging.getLogger(__name__)

#: Longest log line a progress report carries.
PROGRESS_LOG_MAX = 200


@dataclass(frozen=True, slots=True)
class Progress:
    """What a provider's queue said about an attempt while it waits: the provider's own
    status word (``IN_QUEUE``, ``processing``…), the queue position when it reports one, and
    the newest log line (cut to :data:`PROGRESS_LOG_MAX` characters)."""

    status: str
    queue_position: int | None = None
    log: str | None = None


#: Told of each progress report of an attempt; set by the router, never by a plugin.
ProgressListener = Callable[[Progress], None]


class ProviderOptions(BaseModel):
    """Per-instance settings every provider understands; a plugin may subclass to add its own."""

    model_config = ConfigDict(extra="forbid")

    request_timeout_s: float = Field(default=120.0, gt=0, description="Cap on one HTTP request.")
    poll_initial_s: float = Field(default=0.25, gt=0, description="First wait between polls.")
    poll_factor: float = Field(default=1.5, ge=1.0, description="Poll interval growth per poll.")
    poll_max_s: float = Field(default=3.0, gt=0, description="Longest wait between polls.")
    poll_retries: int = Field(
        default=3, ge=0, description="Transient poll failures tolerated before the attempt fails."
    )


@dataclass(slots=True)
class CallContext:
    """What the router hands a provider for one attempt."""

    session: aiohttp.ClientSession
    #: The provider's own model id for the requested catalog model.
    provider_model: str
    #: Monotonic time by which the attempt must be over.
    deadline: float
    clock: Clock = field(default_factory=MonotonicClock)
    #: Set by the provider when the answer carried a request budget (OpenAI x-ratelimit-*).
    budget: RateLimitBudget | None = None
    #: Where :meth:`progress` reports go (None: nowhere); the router sets it per job.
    on_progress: ProgressListener | None = None
    #: The pool :meth:`Provider.request_json` sends through (None: through ``session``).
    http: HttpPool | None = None

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self.deadline - self.clock.now()

    def lasting(self, seconds: float) -> CallContext:
        """A context for a call after this attempt's own (a best-effort cancel, say): the
        same connections and model, a deadline ``seconds`` from now, no progress reports."""
        return replace(self, deadline=self.clock.now() + seconds, budget=None, on_progress=None)

    def progress(
        self, status: str, queue_position: int | None = None, log: str | None = None
    ) -> None:
        """Report what the provider's queue said on a poll: its status word, the queue
        position when it gives one, and its newest log line.

        A hook for plugin authors: call it on every poll answer, as often as you like (the
        job store keeps only changes, at most about one a second). It never raises and never
        blocks; without a listener it does nothing.
        """
        if self.on_progress is None:
            return
        position = queue_position if isinstance(queue_position, int) else None
        line = log.strip()[:PROGRESS_LOG_MAX] if isinstance(log, str) and log.strip() else None
        try:
            self.on_progress(Progress(str(status), position, line))
        except Exception:  # a report must never fail the attempt
            logger.exception("a progress listener raised; the report is dropped")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A provider's HTTP answer: status, headers and the parsed JSON body (None if not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str = ""


class Provider:
    """Base class for a provider plugin: subclass it, set the class attributes, write
    ``generate``, and register the class from a ``register_providers`` hook.

    The router creates one instance per configured *provider instance* (the same plugin may run
    several times with different keys), so keep per-call state out of ``self``.
    """

    #: Short id, also the default instance name and config section (``[providers.<id>]``).
    provider_id: ClassVar[str] = ""
    #: Environment variable holding the API key; None for providers that need no key.
    key_env_var: ClassVar[str | None] = None
    #: Environment variable that overrides the base URL.
    base_url_env_var: ClassVar[str | None] = None
    #: Where the real API lives.
    default_base_url: ClassVar[str] = ""
    #: The HTTP ``Authorization`` scheme (``Bearer``, ``Key``, …).
    auth_scheme: ClassVar[str] = "Bearer"
    #: Options model for this provider's instances.
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(
        self,
        *,
        name: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: ProviderOptions | None = None,
    ) -> None:
        self.name = name or self.provider_id
        self._api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.options = options or self.Options()

    def __repr__(self) -> str:  # never show the key
        return f"<{type(self).__name__} {self.name} {self.base_url}>"

    @property
    def needs_key(self) -> bool:
        """True when the provider cannot be called without an API key."""
        return self.key_env_var is not None

    async def generate(self, request: ImageRequest, ctx: CallContext) -> ProviderOutput:
        """Make the images for ``request`` with ``ctx.provider_model``, or raise a ProviderError."""
        raise NotImplementedError

    # --- error classification -------------------------------------------------------------

    def classify(self, answer: HttpAnswer) -> ProviderError:
        """Turn a non-2xx answer into the right error. Override to recognise provider-specific
        bodies (moderation, quota) and call ``super().classify(answer)`` for the rest."""
        status = answer.status
        message = self.error_message(answer)
        kwargs: dict[str, Any] = {"provider": self.name, "status": status}
        if status == 429:
            return RateLimited(message, retry_after=parse_retry_after(answer.headers), **kwargs)
        if status in (401, 403):
            return AuthFailed(message, **kwargs)
        if status == 408:
            return ProviderTimeout(message, **kwargs)
        if status >= 500:
            return ProviderUnavailable(message, **kwargs)
        if status in (404, 410):
            return ModelNotServed(message, **kwargs)
        return InvalidRequest(message, **kwargs)

    def error_message(self, answer: HttpAnswer) -> str:
        """A short human message for an error answer; override for the provider's shape."""
        body = answer.body
        if isinstance(body, dict):
            for key in ("message", "detail", "error"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return f"HTTP {answer.status}: {value[:300]}"
        return (
            f"HTTP {answer.status}: {answer.text[:300]}" if answer.text else f"HTTP {answer.status}"
        )

    # --- HTTP plumbing --------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate us; never logged."""
        return {"Authorization": f"{self.auth_scheme} {self._api_key}"} if self._api_key else {}

    async def request_json(
        self,
        ctx: CallContext,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """Send one request and return its JSON answer, or raise the classified error.

        Timeouts become :class:`ProviderTimeout`, connection errors and unparseable 2xx bodies
        :class:`ProviderUnavailable`, non-2xx answers whatever :meth:`classify` says.
        """
        remaining = ctx.remaining()
        if remaining <= 0:
            raise ProviderTimeout("deadline passed before the request", provider=self.name)
        timeout_s = min(remaining, self.options.request_timeout_s)
        all_headers = self.auth_headers()
        if headers:
            all_headers.update(headers)
        try:
            if ctx.http is not None:
                body_bytes = None
                if json_body is not None:
                    body_bytes = dump_bytes(json_body)
                    all_headers.setdefault("Content-Type", "application/json")
                response = await ctx.http.request(
                    method, url, headers=all_headers, body=body_bytes, timeout_s=timeout_s
                )
                raw, status, response_headers = response.body, response.status, response.headers
            else:
                async with ctx.session.request(
                    method,
                    url,
                    json=json_body,
                    headers=all_headers,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                ) as reply:
                    raw = await reply.read()
                    status, response_headers = reply.status, reply.headers
        except TimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout_s:.1f}s", provider=self.name) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderUnavailable(
                f"connection failed: {type(exc).__name__}", provider=self.name
            ) from exc
        except ValueError as exc:  # a URL or header that cannot go on the wire
            raise ProviderUnavailable(
                f"cannot send the request: {exc}", provider=self.name
            ) from exc
        budget = parse_rate_limit_budget(response_headers)
        if budget is not None:
            ctx.budget = budget
        text = raw.decode("utf-8", "replace")
        try:
            body = loads(text) if text else None
        except ValueError:
            body = None
            if status < 400:
                raise ProviderUnavailable(
                    f"malformed JSON in HTTP {status} answer", provider=self.name, status=status
                ) from None
        answer = HttpAnswer(status, response_headers, body, text)
        if status >= 400:
            raise self.classify(answer)
        if not isinstance(body, dict):
            raise ProviderUnavailable(
                f"expected a JSON object in HTTP {status} answer", provider=self.name, status=status
            )
        return answer

    def poll_waits(self, ctx: CallContext) -> AsyncIterator[int]:
        """Sleep between polls with a growing interval; yields the poll number.

        Raises :class:`ProviderTimeout` instead of sleeping past the deadline.
        """
        return _PollWaits(self.name, self.options, ctx)

    async def poll_json(self, ctx: CallContext, method: str, url: str) -> HttpAnswer:
        """Fetch a status or result URL, tolerating a few transient failures.

        A poll is not a new generation (the provider already took the job), so a 429 or 5xx
        here is waited out (honouring Retry-After) up to ``options.poll_retries`` times.
        """
        failures = 0
        while True:
            try:
                return await self.request_json(ctx, method, url)
            except (RateLimited, ProviderUnavailable) as exc:
                if isinstance(exc, ProviderTimeout) or failures >= self.options.poll_retries:
                    raise
                failures += 1
                wait = exc.retry_after or self.options.poll_initial_s * (2**failures)
                if wait >= ctx.remaining():
                    raise
                await asyncio.sleep(wait)


class _PollWaits:
    """:meth:`Provider.poll_waits`' iterator. An object rather than an async generator: a
    plugin returns from inside its ``async for`` once the provider is done, and an async
    generator left that way is closed later by a task the event loop makes for it (one task,
    and a wake-up of the loop, for every polled job)."""

    __slots__ = ("_ctx", "_delay", "_factor", "_max_s", "_name", "_number")

    def __init__(self, name: str, options: ProviderOptions, ctx: CallContext) -> None:
        self._name, self._ctx, self._number = name, ctx, 0
        self._delay, self._factor, self._max_s = (
            options.poll_initial_s,
            options.poll_factor,
            options.poll_max_s,
        )

    def __aiter__(self) -> _PollWaits:
        return self

    async def __anext__(self) -> int:
        delay = self._delay
        if self._ctx.remaining() <= delay:
            raise ProviderTimeout("deadline passed while waiting in the queue", provider=self._name)
        await asyncio.sleep(delay)
        self._number += 1
        self._delay = min(delay * self._factor, self._max_s)
        return self._number
