"""Simulated provider accounts: the farm's own fault engine and counters, on virtual time.

Each account is one router provider instance's view of a provider: a plugin, an API key and a
fault profile (the farm scenario's profile of that plugin, with the account's own ``faults``
laid over it). A call runs through exactly what the farm's pipeline does for a generation
request: ``down`` → the key's token bucket and the one random draw
(:meth:`mockproviders.engine.FaultEngine.decide`) → latency and generation time drawn from
the profile's distributions. Retry-After windows are the farm's
(:func:`mockproviders.retry_after.make_retry_after`) and are counted by the farm's own
:class:`mockproviders.stats.FarmStats`, grace included.

What the router sees is what the provider plugin would raise, at the virtual time it would:

- 429 → :class:`RateLimited` with the Retry-After the plugin would parse; 5xx, ``down`` and
  ``reset`` → :class:`ProviderUnavailable` at once; ``401`` → :class:`AuthFailed`;
  ``timeout`` → :class:`ProviderTimeout` when the request's timeout ends.
- Synchronous APIs (OpenAI) answer after latency + generation, capped by the attempt deadline
  and the request timeout. Queue APIs (fal, WaveSpeed) answer the submit after the latency,
  then the result is seen at the first poll after the generation ends, on the plugin's own poll
  schedule (``poll_initial_s`` × ``poll_factor``, up to ``poll_max_s``), and the plugin gives up
  when the next poll would pass the deadline. A poll that meets a ``down`` phase is retried
  ``poll_retries`` times, as the plugin does, before the attempt fails.
- ``content_policy`` → :class:`ContentRejected` (at once for sync APIs, at the result for queue
  APIs); ``malformed`` → :class:`ProviderUnavailable`.
- OpenAI's ``x-ratelimit-*`` headers are built exactly as the farm sends them and parsed by the
  router's own parser, so the router paces itself as it would against the farm.

``max_concurrent`` (simulation only: the farm has no such cap) bounds the generations a key
runs at once; over it, calls either wait in the provider's queue (``"queue"``) or get a 429
(``"reject"``).

One concept (over 400 lines): how a simulated account answers each call, by wire format.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from imagerouter.clock import Clock
from imagerouter.errors import (
    AuthFailed,
    ContentRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.provider import ProviderOptions
from imagerouter.resilience.headers import RateLimitBudget, parse_rate_limit_budget
from imagerouter.simulate.windows import RetryAfterCounter
from mockproviders.bucket import BucketState
from mockproviders.engine import RATE_LIMIT, FaultEngine
from mockproviders.profile import DelaySampler, FaultProfile
from mockproviders.retry_after import make_retry_after
from mockproviders.stats import FarmStats

__all__ = ["Answer", "ProviderAccount", "effective_profile", "queue_api"]

#: What the router sees when a call ends: (monotonic time, error or None, learned budget).
Answer = tuple[float, ProviderError | None, RateLimitBudget | None]
Schedule = Callable[[float, Callable[[Any, float], None], Any], None]
Reanswer = Callable[[Any, Answer], None]

#: Plugins whose API is a queue (submit, then poll for the result).
_QUEUE_PLUGINS = frozenset({"fal", "wavespeed"})
_SERVER_ERRORS = {"500": 500, "502": 502, "503": 503}


def queue_api(plugin: str) -> bool:
    """Does ``plugin`` speak a queue API (submit, poll) rather than answer synchronously?"""
    return plugin in _QUEUE_PLUGINS


def effective_profile(profile: FaultProfile, clock_s: float) -> FaultProfile:
    """``profile`` at ``clock_s`` on the scenario clock: its base with every active phase laid
    over it, later phases winning (the farm engine's rule)."""
    effective = profile.without_phases()
    for phase in profile.phases:
        if phase.active(clock_s):
            effective = effective.overlay(phase.faults)
    return effective


class _Generation:
    """A generation on a capped key: its call, when its submit was answered, how long it takes,
    the attempt's deadline, what it will answer, and whether it holds a slot yet."""

    __slots__ = (
        "budget",
        "deadline",
        "fault",
        "gen_s",
        "promised",
        "running",
        "submitted",
        "ticket",
    )

    def __init__(
        self,
        ticket: Any,
        submitted: float,
        gen_s: float,
        deadline: float,
        fault: str | None,
        budget: RateLimitBudget | None,
    ) -> None:
        self.ticket = ticket
        self.submitted = submitted
        self.gen_s = gen_s
        self.deadline = deadline
        self.fault = fault
        self.budget = budget
        self.promised = math.inf
        self.running = False


class ProviderAccount:
    """One provider account (plugin + key + fault profile) answering calls on virtual time.

    Args:
        name: the router provider instance this account serves.
        tier: the fault engine's provider name for the account's profile.
        key: the API key (calls from one key share its token bucket and Retry-After windows).
        plugin: the provider plugin id (``fal``, ``openai``…).
        profile: the fault profile, phases included.
        engine: the farm's fault engine (it owns the buckets and the seeded RNGs).
        stats: the farm's counters (requests, answers).
        windows: the Retry-After windows issued to this account's tier, per key.
        clock: the virtual clock; ``started`` is the scenario clock's zero on it.
        options: the provider plugin's options (request timeout, poll schedule).
        queue: a queue API (submit, poll) rather than a synchronous one.
        retry_after_ms: the API sends OpenAI's exact ``retry-after-ms`` beside ``retry-after``.
        sends_budget: the API sends ``x-ratelimit-*`` request-budget headers (its farm adapter
            sets ``budget_headers``, as OpenAI's does).
        max_concurrent: generations the key runs at once (None: no cap).
        over_capacity: ``"queue"`` or ``"reject"`` past ``max_concurrent``.
        schedule: ``schedule(time, handler, obj)`` puts ``handler(obj, time)`` on the event queue.
        reanswer: told when a queued generation gets a slot and so an earlier answer.
    """

    __slots__ = (
        "_busy",
        "_cap",
        "_clock",
        "_down_ends",
        "_down_starts",
        "_engine",
        "_generations",
        "_gens",
        "_key",
        "_next_delay",
        "_offsets",
        "_ok",
        "_options",
        "_profile",
        "_profile_from",
        "_profile_until",
        "_queue",
        "_reanswer",
        "_reject",
        "_request_timeout_s",
        "_retry_after_ms",
        "_schedule",
        "_sends_budget",
        "_started",
        "_stats",
        "_tier",
        "_video_rng",
        "_video_samplers",
        "_waiting",
        "_windows",
        "boundaries",
        "capped",
        "key",
        "max_queue",
        "name",
        "plugin",
        "profile",
        "tier",
    )

    def __init__(
        self,
        *,
        name: str,
        tier: str,
        key: str,
        plugin: str,
        profile: FaultProfile,
        engine: FaultEngine,
        stats: FarmStats,
        windows: RetryAfterCounter,
        clock: Clock,
        started: float,
        options: ProviderOptions,
        queue: bool,
        retry_after_ms: bool,
        sends_budget: bool,
        max_concurrent: int | None,
        over_capacity: str,
        schedule: Schedule,
        reanswer: Reanswer,
    ) -> None:
        self.name, self.plugin, self.profile = name, plugin, profile
        self.tier, self.key = tier, key
        self._tier, self._key = tier, key
        self._engine, self._stats, self._clock = engine, stats, clock
        self._windows = windows
        self._started = started
        self._options = options
        self._request_timeout_s = options.request_timeout_s
        self._queue = queue
        self._retry_after_ms = retry_after_ms
        self._sends_budget = sends_budget
        self._cap = max_concurrent
        #: Does the key cap its generations (so the router's letting go of a call matters)?
        self.capped = max_concurrent is not None
        self._reject = over_capacity == "reject"
        self._schedule = schedule
        self._reanswer = reanswer
        self._busy = 0
        self._generations = 0
        #: Video generation times: their own stream, so image runs draw as they always did.
        self._video_rng = random.Random(f"{name}:{key}:video")
        self._video_samplers: dict[int, DelaySampler] = {}
        self._ok = 0
        self._waiting: deque[_Generation] = deque()
        self._gens: dict[Any, _Generation] = {}
        #: The longest the key's queue got (capped keys in "queue" mode).
        self.max_queue = 0
        #: Scenario-clock times where the effective profile may change.
        self.boundaries = sorted(
            {p.at_s for p in profile.phases} | {p.until_s for p in profile.phases if p.until_s}
        )
        self._profile: FaultProfile = engine.profile(tier)
        self._profile_from, self._profile_until = self._validity(clock.now() - started)
        self._down_starts, self._down_ends = self._down_windows()
        self._offsets = [0.0]
        self._next_delay = options.poll_initial_s

    # ------------------------------------------------------------------ profile and schedule

    def _validity(self, clock_s: float) -> tuple[float, float]:
        """The monotonic span around ``clock_s`` in which no phase starts or ends."""
        i = bisect.bisect_right(self.boundaries, clock_s)
        lo = self.boundaries[i - 1] if i else -math.inf
        hi = self.boundaries[i] if i < len(self.boundaries) else math.inf
        return self._started + lo, self._started + hi

    def current_profile(self) -> FaultProfile:
        """The profile in force now: the engine's, fetched again when a phase starts or ends."""
        now = self._clock.now()
        if not self._profile_from <= now < self._profile_until:
            self._profile = self._engine.profile(self._tier)
            self._profile_from, self._profile_until = self._validity(now - self._started)
        return self._profile

    def _down_windows(self) -> tuple[list[float], list[float]]:
        """Monotonic [start, end) spans in which the provider is ``down``, merged."""
        edges = [-math.inf, *self.boundaries, math.inf]
        starts: list[float] = []
        ends: list[float] = []
        for lo, hi in itertools.pairwise(edges):
            probe = lo if lo > -math.inf else (hi - 1.0 if hi < math.inf else 0.0)
            if not effective_profile(self.profile, probe).down:
                continue
            start, end = self._started + lo, self._started + hi
            if ends and ends[-1] == start:
                ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
        return starts, ends

    def _poll_offsets(self, horizon: float) -> list[float]:
        """The plugin's poll times after the submit (cumulative), reaching past ``horizon``."""
        offsets = self._offsets
        if offsets[-1] <= horizon:
            options = self._options
            delay = self._next_delay
            while offsets[-1] <= horizon:
                offsets.append(offsets[-1] + delay)
                delay = min(delay * options.poll_factor, options.poll_max_s)
            self._next_delay = delay
        return offsets

    def _video_sampler(self, profile: FaultProfile) -> DelaySampler:
        """The profile's ``video_generation_ms``, ready to draw (kept per profile)."""
        sampler = self._video_samplers.get(id(profile))
        if sampler is None:
            assert profile.video_generation_ms is not None
            sampler = profile.video_generation_ms.sampler()
            self._video_samplers = {id(profile): sampler}  # the live profile's only
        return sampler

    # ------------------------------------------------------------------ calls

    def call(self, ticket: Any, deadline: float, video: bool = False) -> Answer:
        """A generation request from the router now; ``deadline`` is the attempt's; a
        ``video`` generation takes the profile's ``video_generation_ms`` when it has one.

        Returns the answer the router will see, and when. A call queued behind
        ``max_concurrent`` is promised its timeout, replaced through ``reanswer`` if its
        generation gets a slot in time.
        """
        now = self._clock.now()
        tier, key = self._tier, self._key
        # Counted in the farm's stats by flush_stats(): the simulator issues its Retry-After
        # windows to its own counter, so the farm's window check has nothing to look at.
        self._generations += 1
        self._windows.arrived(key, now)
        if not self._profile_from <= now < self._profile_until:
            self.current_profile()
        profile = self._profile
        if profile.down:
            self._stats.answered(tier, key, 503)
            budget = self._budget(self._engine.bucket_state(tier, key, profile))
            error = ProviderUnavailable("HTTP 503: down", provider=self.name, status=503)
            return now, error, budget
        fault, retry_delay_s, bucket, latency_s, generation_s = self._engine.decide_values(
            tier, key, profile, bucket_state=self._sends_budget
        )
        budget = None if bucket is None else self._budget(bucket)
        if video and profile.video_generation_ms is not None:
            generation_s = self._video_sampler(profile).sample_ms(self._video_rng) / 1000
        if fault is not None and fault != "malformed" and fault != "content_policy":
            return self._fault(now, deadline, fault, retry_delay_s, profile, budget)
        timeout = now + self._request_timeout_s
        if deadline < timeout:
            timeout = deadline
        answered = now + latency_s
        if answered >= timeout:
            return timeout, ProviderTimeout("no answer", provider=self.name), budget
        if not self._queue:
            if fault == "content_policy":  # refused before generating
                self._stats.answered(tier, key, 400)
                error = ContentRejected("HTTP 400: moderation_blocked", provider=self.name)
                return answered, error, budget
            gen_deadline = timeout
        else:
            if fault == "malformed":  # the submit answer is cut short
                self._ok += 1
                return answered, ProviderUnavailable("malformed JSON", provider=self.name), budget
            gen_deadline = deadline
        if self._cap is None:  # no slots to keep: the answer is known now
            self._ok += 1
            if self._queue:
                return self._polled(answered, answered + generation_s, deadline, fault, budget)
            return self._result(answered, answered + generation_s, timeout, fault, budget)
        gen = _Generation(ticket, answered, generation_s, gen_deadline, fault, budget)
        if self._busy >= self._cap:
            if self._reject:
                return self._rate_limited(now, profile.retry_after_s, profile, budget)
            self._ok += 1
            return self._enqueue(gen)
        self._ok += 1
        self._run(gen, answered)
        return self._answer(gen, answered)

    def flush_stats(self) -> None:
        """Add the generation requests and 200 answers counted since the last flush to the
        farm's stats (they are counted here, one integer each, on the hot path)."""
        if self._generations or self._ok:
            self._stats.add(
                self._tier,
                self._key,
                requests=self._generations,
                generations=self._generations,
                statuses={"200": self._ok} if self._ok else {},
            )
            self._generations = self._ok = 0

    def finished(self, ticket: Any, at: float) -> None:
        """The router is done with ``ticket`` (answered, timed out or cancelled): on a capped
        key its generation slot, or its place in the queue, is given up."""
        if not self._gens:
            return
        gen = self._gens.pop(ticket, None)
        if gen is not None and gen.running:
            self._busy -= 1
            self._start_next(at)

    # ------------------------------------------------------------------ internals

    def _answer(self, gen: _Generation, start: float) -> Answer:
        """What the router sees of a generation that starts at ``start``."""
        return self._result(gen.submitted, start + gen.gen_s, gen.deadline, gen.fault, gen.budget)

    def _result(
        self,
        submitted: float,
        done_at: float,
        deadline: float,
        fault: str | None,
        budget: RateLimitBudget | None,
    ) -> Answer:
        """What the router sees of a generation submitted at ``submitted`` that is done at
        ``done_at``, for an attempt that ends at ``deadline``."""
        if self._queue:
            return self._polled(submitted, done_at, deadline, fault, budget)
        if done_at >= deadline:
            return deadline, ProviderTimeout("no answer", provider=self.name), budget
        if fault == "malformed":
            return done_at, ProviderUnavailable("malformed JSON", provider=self.name), budget
        return done_at, None, budget

    def _fault(
        self,
        now: float,
        deadline: float,
        fault: str,
        retry_delay_s: float | None,
        profile: FaultProfile,
        budget: RateLimitBudget | None,
    ) -> Answer:
        """A fault the farm answers at once (or, for ``timeout``, never)."""
        tier, key, name = self._tier, self._key, self.name
        if fault == RATE_LIMIT or fault == "429":
            delay = retry_delay_s or 0.0
            return self._rate_limited(now, delay, profile, budget)
        if fault in _SERVER_ERRORS:
            status = _SERVER_ERRORS[fault]
            self._stats.answered(tier, key, status)
            error: ProviderError = ProviderUnavailable(
                f"HTTP {status}: injected", provider=name, status=status
            )
            return now, error, budget
        if fault == "401":
            self._stats.answered(tier, key, 401)
            return now, AuthFailed("HTTP 401: invalid API key", provider=name, status=401), budget
        self._stats.answered(tier, key, fault)
        if fault == "timeout":
            timeout = now + self._options.request_timeout_s
            return min(deadline, timeout), ProviderTimeout("no answer", provider=name), None
        return now, ProviderUnavailable("connection reset", provider=name), None

    def _rate_limited(
        self,
        now: float,
        delay: float,
        profile: FaultProfile,
        budget: RateLimitBudget | None,
    ) -> Answer:
        """A 429 with the Retry-After the farm would send, its window counted by the farm."""
        retry_after = make_retry_after(
            delay,
            profile.retry_after_format,
            wall_now=self._clock.wall(),
            with_ms=self._retry_after_ms,
        )
        self._stats.answered(self._tier, self._key, 429)
        window = None
        if retry_after is not None:
            window = retry_after.window_s
            self._windows.issued(self._key, now, window, profile.grace_ms / 1000)
        error = RateLimited("HTTP 429", provider=self.name, status=429, retry_after=window)
        return now, error, budget

    def _polled(
        self,
        submitted: float,
        done_at: float,
        deadline: float,
        fault: str | None,
        budget: RateLimitBudget | None,
    ) -> Answer:
        """A queue API: the result is seen at the first poll after ``done_at``, unless the
        poll loop gives up first (when the next poll would pass the deadline)."""
        horizon = deadline - submitted
        offsets = self._offsets
        if offsets[-1] <= horizon:
            offsets = self._poll_offsets(horizon)
        give_up = bisect.bisect_left(offsets, horizon, 1)
        done = (
            give_up if done_at >= deadline else bisect.bisect_left(offsets, done_at - submitted, 1)
        )
        if done >= give_up:
            error = ProviderTimeout(
                "deadline passed while waiting in the queue", provider=self.name
            )
            return submitted + offsets[give_up - 1], error, budget
        seen = submitted + offsets[done]
        starts = self._down_starts
        # Only a down span that ends after the submit and starts before the result is seen
        # can meet a poll (the same test _down_during_polls starts with).
        if starts and starts[0] < seen and submitted < self._down_ends[-1]:
            failed = self._down_during_polls(submitted, seen, deadline)
            if failed is not None:
                return failed, ProviderUnavailable("HTTP 503: down", provider=self.name), budget
        if fault == "content_policy":
            return seen, ContentRejected("content_policy_violation", provider=self.name), budget
        return seen, None, budget

    def _down_during_polls(self, submitted: float, seen: float, deadline: float) -> float | None:
        """The time the attempt fails if a poll between ``submitted`` and ``seen`` meets a
        ``down`` phase that outlasts the plugin's poll retries; else None."""
        starts, ends, offsets = self._down_starts, self._down_ends, self._offsets
        options = self._options
        i = bisect.bisect_right(ends, submitted)
        while i < len(starts) and starts[i] < seen:
            k = bisect.bisect_left(offsets, starts[i] - submitted, 1)
            poll = submitted + offsets[k]
            if poll > seen:
                return None
            if poll < ends[i]:
                t = poll
                for failures in range(1, options.poll_retries + 1):
                    wait = options.poll_initial_s * (2**failures)
                    if wait >= deadline - t:
                        return t
                    t += wait
                    if t >= ends[i]:
                        break
                else:
                    return t
            i += 1
        return None

    def _budget(self, bucket: BucketState | None) -> RateLimitBudget | None:
        """The request budget the router learns from OpenAI's headers, as the farm sends them."""
        if bucket is None or not self._sends_budget:
            return None
        return parse_rate_limit_budget(bucket.headers())

    def _run(self, gen: _Generation, start: float) -> None:
        """Give ``gen`` a slot from ``start``; it frees when the generation ends (or when the
        router lets go of the call first)."""
        gen.running = True
        self._busy += 1
        self._gens[gen.ticket] = gen
        self._schedule(start + gen.gen_s, self._generation_done, gen)

    def _enqueue(self, gen: _Generation) -> Answer:
        """Queue ``gen`` behind the key's cap; until it runs, the call is promised its timeout."""
        if self._queue:
            promise = self._polled(gen.submitted, math.inf, gen.deadline, None, gen.budget)
        else:
            promise = (gen.deadline, ProviderTimeout("no answer", provider=self.name), gen.budget)
        gen.promised = promise[0]
        self._waiting.append(gen)
        self._gens[gen.ticket] = gen
        if len(self._waiting) > self.max_queue:
            self.max_queue = len(self._waiting)
        return promise

    def _generation_done(self, gen: _Generation, at: float) -> None:
        """A generation ended: its slot goes to the next queued call."""
        if self._gens.get(gen.ticket) is gen:
            del self._gens[gen.ticket]
            self._busy -= 1
            self._start_next(at)

    def _start_next(self, at: float) -> None:
        """Start queued generations while slots are free; tell each call its new answer when
        that comes before the timeout it was promised."""
        cap = self._cap if self._cap is not None else 0
        while self._waiting and self._busy < cap:
            gen = self._waiting.popleft()
            if self._gens.get(gen.ticket) is not gen:
                continue  # the router gave up on it already
            start = max(at, gen.submitted)
            self._run(gen, start)
            answer = self._answer(gen, start)
            if answer[0] < gen.promised:
                self._reanswer(gen.ticket, answer)
