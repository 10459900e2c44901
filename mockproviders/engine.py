"""The fault engine: decides, for every request, what goes wrong. Shared by every adapter.

A generation request (a route its adapter marks ``generation=True``: a synchronous generate,
a queue submit) goes through, in order:

1. ``down``: answered 503 in the provider's error shape (polls too);
2. the API key check (401 when the request carries none);
3. the ``rate_limit`` token bucket of that key: an empty bucket answers 429 with a
   Retry-After equal to the time until the next token;
4. the random faults: exactly **one** draw from the provider's seeded RNG per request picks at
   most one of ``error_rates`` (walked in the order ``429 500 502 503 401 timeout reset
   malformed content_policy``);
5. ``latency_ms`` before the adapter answers; ``generation_ms`` is how long the image takes
   (a queued job's time to completion, or added to a synchronous answer).

Polls, status, result and cancel requests only ever see ``down``.

The effective profile at a moment is the base profile with the fields of every active phase
laid over it, later phases winning. The scenario clock starts when the farm starts and
restarts on :meth:`FaultEngine.reset`, which also empties the buckets and re-seeds the RNGs,
so the same seed and the same sequence of requests give the same outcomes.
Each provider has its own ``random.Random`` for faults and another for delays, both seeded
from a SHA-256 of the seed and the provider name (never Python's salted ``hash()``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imagerouter.clock import Clock
from imagerouter.errors import ConfigError
from imagerouter.resilience.token_bucket import TokenBucket
from mockproviders import bucket as buckets
from mockproviders.bucket import BucketState
from mockproviders.profile import FAULT_KINDS, FaultProfile, Phase, RateLimit
from mockproviders.scenario import Scenario

__all__ = ["Decision", "FaultEngine", "stable_seed"]

#: The fault name of a 429 from the token bucket (random 429s are ``"429"``).
RATE_LIMIT = "rate_limit"
#: Compiled profiles kept per provider (a farm whose faults are set over and over starts over).
_MAX_RULES = 64


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` that is the same in every process and every run."""
    text = ":".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one generation request."""

    #: ``None`` lets the request through; else ``"rate_limit"`` or one of ``FAULT_KINDS``.
    fault: str | None
    #: The effective profile the decision was made under.
    profile: FaultProfile
    #: For 429s: the seconds the client should wait before trying again.
    retry_delay_s: float | None = None
    #: The key's bucket after this request, when the profile has a rate limit.
    bucket: BucketState | None = None
    #: Seconds to wait before the adapter answers.
    latency_s: float = 0.0
    #: Seconds the generation takes.
    generation_s: float = 0.0


class _Rules:
    """One effective profile worked out for the per-request path: the rate limit,
    the cumulative fault thresholds (in ``FAULT_KINDS`` order, zero rates left out: they can
    never be the one drawn) and the delay samplers. Decides exactly as the profile reads."""

    __slots__ = ("generation", "latency", "limit", "profile", "retry_after_s", "thresholds")

    def __init__(self, profile: FaultProfile) -> None:
        self.profile = profile
        limit = profile.rate_limit
        self.limit = None if limit is None else (limit, limit.rpm)
        rates = profile.error_rates
        thresholds: list[tuple[float, str]] = []
        cumulative = 0.0
        for kind in FAULT_KINDS:
            cumulative += rates.get(kind, 0.0)
            if rates.get(kind, 0.0):
                thresholds.append((cumulative, kind))
        self.thresholds = tuple(thresholds)
        self.retry_after_s = profile.retry_after_s
        self.latency = profile.latency_ms.sampler() if profile.latency_ms else None
        self.generation = profile.generation_ms.sampler() if profile.generation_ms else None


class _ProviderFaults:
    """The live fault state of one provider: profile, phases, RNGs and buckets."""

    __slots__ = (
        "base",
        "buckets",
        "delay_rng",
        "effective_cache",
        "fault_rng",
        "limits",
        "phases",
        "rules",
        "seed",
    )

    def __init__(self, base: FaultProfile, phases: list[Phase], seed: int) -> None:
        self.base = base
        self.phases = phases
        self.seed = seed
        self.fault_rng = random.Random()
        self.delay_rng = random.Random()
        self.buckets: dict[str, TokenBucket] = {}
        #: The rate limit each key's bucket was last sized for (same object: same size).
        self.limits: dict[str, RateLimit] = {}
        self.effective_cache: dict[tuple[int, ...], FaultProfile] = {}
        #: Compiled rules per profile object (keyed by id; the entry holds the profile alive).
        self.rules: dict[int, _Rules] = {}

    def rules_for(self, profile: FaultProfile) -> _Rules:
        """The compiled rules of ``profile`` (profiles are immutable: compiled once)."""
        rules = self.rules.get(id(profile))
        if rules is None or rules.profile is not profile:
            if len(self.rules) >= _MAX_RULES:
                self.rules.clear()
            rules = self.rules[id(profile)] = _Rules(profile)
        return rules

    def reseed(self, provider: str) -> None:
        """Start both RNGs over from this provider's seed."""
        self.fault_rng.seed(stable_seed(self.seed, provider, "faults"))
        self.delay_rng.seed(stable_seed(self.seed, provider, "delays"))

    def effective(self, clock_s: float) -> FaultProfile:
        """The base with the active phases laid over it, cached per set of active phases."""
        active = tuple(i for i, phase in enumerate(self.phases) if phase.active(clock_s))
        profile = self.effective_cache.get(active)
        if profile is None:
            profile = self.base
            for index in active:
                profile = profile.overlay(self.phases[index].faults)
            self.effective_cache[active] = profile
        return profile


class FaultEngine:
    """Per-provider fault profiles, phases on the scenario clock, seeded RNGs and buckets."""

    def __init__(self, scenario: Scenario, providers: Iterable[str], clock: Clock) -> None:
        self._clock = clock
        self._scenario_seed = scenario.seed
        self._started = clock.now()
        self._providers: dict[str, _ProviderFaults] = {}
        names = list(providers)
        for name in scenario.providers:
            if name not in names:
                raise ConfigError(
                    f"unknown provider {name!r}; the farm serves {', '.join(names)}",
                    file=scenario.source,
                    field=f"providers.{name}",
                )
        for name in names:
            profile = scenario.providers.get(name, FaultProfile())
            state = _ProviderFaults(
                profile.without_phases(), list(profile.phases), self._seed_of(profile)
            )
            state.reseed(name)
            self._providers[name] = state

    def _seed_of(self, profile: FaultProfile) -> int:
        return profile.seed if profile.seed is not None else self._scenario_seed

    def _state(self, provider: str) -> _ProviderFaults:
        try:
            return self._providers[provider]
        except KeyError:
            raise KeyError(f"unknown provider {provider!r}") from None

    @property
    def provider_names(self) -> list[str]:
        """The providers this engine knows, in the order they were given."""
        return list(self._providers)

    def clock_s(self) -> float:
        """Seconds on the scenario clock: since the farm started or was last reset."""
        return self._clock.now() - self._started

    def profile(self, provider: str) -> FaultProfile:
        """The profile in force for ``provider`` right now (base plus active phases)."""
        return self._state(provider).effective(self.clock_s())

    def set_faults(self, provider: str, profile: FaultProfile) -> None:
        """Replace the live base profile; its phases too when ``profile`` sets ``phases``."""
        state = self._state(provider)
        state.base = profile.without_phases()
        if "phases" in profile.model_fields_set:
            state.phases = list(profile.phases)
        state.effective_cache.clear()
        seed = self._seed_of(state.base)
        if seed != state.seed:
            state.seed = seed
            state.reseed(provider)

    def reset(self) -> None:
        """Restart the scenario clock, empty every bucket and re-seed every RNG."""
        self._started = self._clock.now()
        for name, state in self._providers.items():
            state.buckets.clear()
            state.limits.clear()
            state.reseed(name)

    def describe(self, provider: str) -> dict[str, Any]:
        """The live profile as JSON: base ``faults``, ``phases`` and the ``effective`` one."""
        state = self._state(provider)
        effective = state.effective(self.clock_s()).to_json(only_set=False)
        effective.pop("phases", None)
        return {
            "faults": state.base.to_json(),
            "phases": [phase.model_dump(mode="json", exclude_unset=True) for phase in state.phases],
            "effective": effective,
        }

    def bucket_state(
        self, provider: str, key: str | None, profile: FaultProfile
    ) -> BucketState | None:
        """The key's bucket as it stands, without taking a token (None without a rate limit)."""
        limit = profile.rate_limit
        if limit is None or key is None:
            return None
        return buckets.state(self._bucket(self._state(provider), key, limit), limit.rpm)

    def _bucket(self, state: _ProviderFaults, key: str, limit: RateLimit) -> TokenBucket:
        bucket = state.buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(limit.per_second, limit.capacity, self._clock)
        else:
            bucket = buckets.reconfigured(bucket, limit.per_second, limit.capacity, self._clock)
        state.buckets[key] = bucket
        state.limits[key] = limit
        return bucket

    def decide(self, provider: str, key: str, profile: FaultProfile) -> Decision:
        """Run a generation request from ``key`` through the bucket and the random draw."""
        fault, retry_delay_s, bucket, latency_s, generation_s = self.decide_values(
            provider, key, profile
        )
        return Decision(
            fault,
            profile,
            retry_delay_s=retry_delay_s,
            bucket=bucket,
            latency_s=latency_s,
            generation_s=generation_s,
        )

    def decide_values(
        self, provider: str, key: str, profile: FaultProfile, *, bucket_state: bool = True
    ) -> tuple[str | None, float | None, BucketState | None, float, float]:
        """:meth:`decide` as a plain tuple ``(fault, retry_delay_s, bucket, latency_s,
        generation_s)``, for callers that decide millions of requests (the simulator).

        The same decision from the same draws; ``bucket_state=False`` leaves ``bucket`` None
        (describing the bucket changes nothing, so a caller that sends no rate-limit headers
        need not pay for it).
        """
        state = self._providers.get(provider)
        if state is None:
            state = self._state(provider)
        rules = state.rules.get(id(profile))
        if rules is None or rules.profile is not profile:
            rules = state.rules_for(profile)
        described = None
        limit = rules.limit
        if limit is not None:
            rate_limit, rpm = limit
            bucket = state.buckets.get(key)
            if bucket is None or state.limits.get(key) is not rate_limit:
                bucket = self._bucket(state, key, rate_limit)
            wait_s = 0.0 if bucket.try_take() else bucket.time_until()
            if bucket_state:
                described = buckets.state(bucket, rpm)
            if wait_s > 0:
                return RATE_LIMIT, wait_s, described, 0.0, 0.0
        # One draw from the fault RNG, walked over the rates in FAULT_KINDS order.
        draw = state.fault_rng.random()
        fault = None
        for threshold, kind in rules.thresholds:
            if draw < threshold:
                fault = kind
                break
        if fault is not None:
            if fault == "429":
                return fault, rules.retry_after_s, described, 0.0, 0.0
            if fault != "malformed" and fault != "content_policy":
                return fault, None, described, 0.0, 0.0
        rng = state.delay_rng
        latency_ms = rules.latency.sample_ms(rng) if rules.latency is not None else 0.0
        generation_ms = rules.generation.sample_ms(rng) if rules.generation is not None else 0.0
        return fault, None, described, latency_ms / 1000, generation_ms / 1000
