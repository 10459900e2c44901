"""Rate limits, Retry-After cooldowns, the retry budget and concurrency limits: pure and O(1).

* :class:`TokenBucket`: pacing toward one provider key, corrected by the provider's own
  ``x-ratelimit-*`` headers.
* :class:`Cooldowns`: "not before" times per key, from a ``Retry-After`` or, for a 429 without
  one, learned (short at first, doubling while the 429s continue, forgotten after quiet time).
* :class:`RetryBudget`: retries into one provider instance capped at a fraction of that
  instance's first attempts over a sliding window, with a floor (Envoy ``retry_budget``, Finagle
  ``RetryBudget``), so an outage of a provider does not turn into a retry storm on it.
* :class:`ConcurrencyLimit` and its implementations :class:`FixedLimit`, :class:`AIMDLimit` and
  :class:`GradientLimit`, in the style of Netflix concurrency-limits.

Every machine reads time only through the injected :class:`~imagerouter.clock.Clock`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from imagerouter.clock import Clock
from imagerouter.events import Listeners

__all__ = [
    "AIMDLimit",
    "ConcurrencyLimit",
    "CooldownConfig",
    "CooldownStarted",
    "Cooldowns",
    "FixedLimit",
    "GradientLimit",
    "RetryBudget",
    "TokenBucket",
]


# --------------------------------------------------------------------------- token bucket


class TokenBucket:
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up; starts full.

    Tokens may go negative after :meth:`set_from_headers` learns that the provider has nothing
    left: the bucket is then in debt until the provider's reset time.
    """

    __slots__ = ("_burst", "_clock", "_configured_burst", "_rate", "_t", "_tokens")

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        if not rate_per_s > 0.0:
            raise ValueError(f"TokenBucket.rate_per_s must be > 0, not {rate_per_s!r}")
        if not burst >= 1.0:
            raise ValueError(f"TokenBucket.burst must be ≥ 1, not {burst!r}")
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._configured_burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._t = clock.now()

    @property
    def rate_per_s(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """Current capacity: the configured burst, lowered by a smaller learned ``limit``."""
        return self._burst

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while in debt after a learned reset)."""
        self._refill(self._clock.now())
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there; False (and nothing taken) otherwise."""
        now = self._clock.now()
        if now != self._t:
            self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def time_until(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available: 0 if now, ``inf`` if ``n`` exceeds burst."""
        self._refill(self._clock.now())
        missing = n - self._tokens
        if missing <= 0.0:
            return 0.0
        if n > self._burst:
            return math.inf
        return missing / self._rate

    def set_from_headers(
        self, limit: float | None, remaining: float | None, reset_s: float | None
    ) -> None:
        """Learn from a response's rate-limit headers (OpenAI's ``x-ratelimit-*-requests``).

        The provider's view can only make the bucket stricter: ``limit`` lowers the capacity
        (never above the configured burst), ``remaining`` lowers the tokens; with ``remaining``
        at 0, no token is granted until ``reset_s`` seconds from now (the bucket goes into
        debt so that its first token arrives exactly then), after which it refills at its rate.
        A missing header is None and changes nothing.
        """
        self._refill(self._clock.now())
        if limit is not None and limit >= 1:
            self._burst = min(self._configured_burst, float(limit))
            if self._tokens > self._burst:
                self._tokens = self._burst
        if remaining is None:
            return
        if remaining <= 0:
            wait = reset_s if reset_s is not None and reset_s > 0.0 else 0.0
            ceiling = 1.0 - self._rate * wait if wait else 0.0
            if ceiling < self._tokens:
                self._tokens = ceiling
        elif remaining < self._tokens:
            self._tokens = float(remaining)

    def snapshot(self) -> dict[str, Any]:
        """The bucket as a plain dict: ``tokens``, ``updated_at`` (monotonic), ``rate_per_s``,
        ``burst``."""
        self._refill(self._clock.now())
        return {
            "tokens": self._tokens,
            "updated_at": self._t,
            "rate_per_s": self._rate,
            "burst": self._burst,
        }

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last look, up to the capacity."""
        dt = now - self._t
        if dt > 0.0:
            tokens = self._tokens + dt * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
            self._t = now


# --------------------------------------------------------------------------- cooldowns


@dataclass(frozen=True, slots=True)
class CooldownConfig:
    """How a cooldown is learned for a 429 that carries no Retry-After.

    Attributes:
        learned_initial_s: the first such cooldown of an episode.
        learned_multiplier: growth per further 429 of the same episode.
        learned_max_s: cap on a learned cooldown.
        learned_reset_s: quiet time, after a learned cooldown ends, that ends the episode
            (the next one starts again at ``learned_initial_s``).
    """

    learned_initial_s: float = 1.0
    learned_multiplier: float = 2.0
    learned_max_s: float = 30.0
    learned_reset_s: float = 60.0

    def __post_init__(self) -> None:
        """Reject values that would make the cooldowns meaningless, naming the field."""
        checks: tuple[tuple[str, bool], ...] = (
            ("learned_initial_s", self.learned_initial_s > 0.0),
            ("learned_multiplier", self.learned_multiplier >= 1.0),
            ("learned_max_s", self.learned_max_s >= self.learned_initial_s),
            ("learned_reset_s", self.learned_reset_s >= 0.0),
        )
        for field, ok in checks:
            if not ok:
                raise ValueError(
                    f"CooldownConfig.{field} is out of range: {getattr(self, field)!r}"
                )


@dataclass(frozen=True, slots=True)
class CooldownStarted:
    """A cooldown this process started or lengthened (``Cooldowns.on_start`` listeners get it).

    Attributes:
        key: the cooled-down key (a provider instance name, for the router).
        until: monotonic end of the cooldown.
        reason: ``"retry-after"``, ``"429 without Retry-After"``, …
    """

    key: str
    until: float
    reason: str


class Cooldowns:
    """Not-before times keyed by a string (e.g. ``"openai/key-2"``), with their reasons.

    A cooldown never gets shorter: starting one on a key that already has a later end keeps the
    later end. Expired entries are dropped when looked at and swept whenever the table has
    doubled since the last sweep, so the table stays proportional to the live keys.

    ``on_start`` listeners hear of every cooldown :meth:`start` or :meth:`start_learned` began or
    lengthened (e.g. to share it with other replicas); :meth:`apply` adopts a cooldown decided
    elsewhere without telling them.
    """

    __slots__ = ("_clock", "_config", "_entries", "_learned", "_sweep_at", "on_start")

    _MIN_SWEEP = 64

    def __init__(self, clock: Clock, config: CooldownConfig | None = None) -> None:
        self._clock = clock
        self._config = config if config is not None else CooldownConfig()
        self._entries: dict[str, tuple[float, str]] = {}
        self._learned: dict[str, tuple[float, float]] = {}
        self._sweep_at = self._MIN_SWEEP
        #: Told of every cooldown started or lengthened here (``.add(fn)``).
        self.on_start: Listeners[CooldownStarted] = Listeners()

    def start(self, key: str, seconds: float, reason: str = "retry-after") -> float:
        """Cool ``key`` down for ``seconds`` (a Retry-After); returns the monotonic end."""
        now = self._clock.now()
        end = now + (seconds if seconds > 0.0 else 0.0)
        current = self._entries.get(key)
        if current is not None and current[0] >= end:
            return current[0]
        self._entries[key] = (end, reason)
        self._maybe_sweep(now)
        self.on_start(CooldownStarted(key, end, reason))
        return end

    def apply(self, key: str, until: float, reason: str = "remote") -> bool:
        """Adopt a cooldown decided elsewhere (monotonic ``until``), keeping the later end.

        ``on_start`` listeners are not told (so a shared cooldown is never echoed back).
        Returns True if the cooldown of ``key`` was started or lengthened.
        """
        now = self._clock.now()
        if until <= now:
            return False
        current = self._entries.get(key)
        if current is not None and current[0] >= until:
            return False
        self._entries[key] = (until, reason)
        self._maybe_sweep(now)
        return True

    def start_learned(self, key: str) -> float:
        """Cool ``key`` down after a 429 without Retry-After; returns the seconds to wait.

        The first of an episode waits ``learned_initial_s``; each further one waits
        ``learned_multiplier`` times the previous, up to ``learned_max_s``. A 429 that arrives
        while ``key`` is still cooling down was sent before the cooldown began, so it neither
        grows nor extends it (the remaining time is returned). ``learned_reset_s`` of quiet
        after a learned cooldown ends the episode.
        """
        now = self._clock.now()
        current = self._entries.get(key)
        if current is not None and current[0] > now:
            return current[0] - now
        cfg = self._config
        previous = self._learned.get(key)
        if previous is None or now - previous[1] >= cfg.learned_reset_s:
            length = cfg.learned_initial_s
        else:
            length = min(cfg.learned_max_s, previous[0] * cfg.learned_multiplier)
        end = now + length
        self._learned[key] = (length, end)
        self._entries[key] = (end, "429 without Retry-After")
        self._maybe_sweep(now)
        self.on_start(CooldownStarted(key, end, "429 without Retry-After"))
        return length

    def until(self, key: str) -> float | None:
        """Monotonic end of ``key``'s cooldown, or None if it has none running."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] > self._clock.now():
            return entry[0]
        del self._entries[key]
        return None

    def remaining(self, key: str) -> float:
        """Seconds left on ``key``'s cooldown (0.0 if none)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        left = entry[0] - self._clock.now()
        if left > 0.0:
            return left
        del self._entries[key]
        return 0.0

    def active(self, key: str) -> bool:
        """Is ``key`` cooling down right now?"""
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry[0] > self._clock.now():
            return True
        del self._entries[key]
        return False

    def reason(self, key: str) -> str | None:
        """Why ``key`` is cooling down, or None if it is not."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock.now():
            return None
        return entry[1]

    def clear(self, key: str) -> None:
        """End ``key``'s cooldown now and forget its learned length (an operator's override)."""
        self._entries.pop(key, None)
        self._learned.pop(key, None)

    def snapshot(self) -> dict[str, Any]:
        """The live state as a plain dict.

        ``{"active": {key: {"until": monotonic end, "remaining_s", "reason"}},
        "learned": {key: {"length_s": last learned length, "ends_at": its monotonic end}}}``;
        only live entries (active cooldowns, episodes not yet over) appear.
        """
        now = self._clock.now()
        self.sweep()
        return {
            "active": {
                key: {"until": end, "remaining_s": end - now, "reason": reason}
                for key, (end, reason) in self._entries.items()
            },
            "learned": {
                key: {"length_s": length, "ends_at": end}
                for key, (length, end) in self._learned.items()
            },
        }

    def sweep(self) -> int:
        """Drop every expired cooldown and every finished episode; returns how many went."""
        now = self._clock.now()
        before = len(self._entries) + len(self._learned)
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        reset_s = self._config.learned_reset_s
        self._learned = {k: e for k, e in self._learned.items() if now - e[1] < reset_s}
        after = len(self._entries) + len(self._learned)
        self._sweep_at = max(self._MIN_SWEEP, 2 * after)
        return before - after

    def __len__(self) -> int:
        """Entries held (active cooldowns plus live episodes, and not-yet-swept expired ones)."""
        return len(self._entries) + len(self._learned)

    def _maybe_sweep(self, now: float) -> None:
        """Sweep when the table has doubled since the last sweep: O(1) amortized."""
        if len(self._entries) + len(self._learned) >= self._sweep_at:
            self.sweep()


# --------------------------------------------------------------------------- retry budget


class RetryBudget:
    """Retries capped at a fraction of first attempts over a sliding window.

    The router keeps one per provider instance: a *first attempt* is a job's first call into
    that instance (its first choice, a failover or a hedge), a *retry* a job's call into an
    instance it already failed on. Failovers never spend a budget: they add no load to the
    provider that failed.

    Over the last ``window_s`` seconds (in ``buckets`` buckets, so the window is between
    ``window_s·(1 - 1/buckets)`` and ``window_s`` long), a retry is allowed while
    ``retries + 1 ≤ max(min_retries, ratio · first_attempts)``: a floor as in Envoy's
    ``min_retry_concurrency``, so that a quiet client can still retry.
    """

    __slots__ = (
        "_b_first",
        "_b_retry",
        "_clock",
        "_first",
        "_head",
        "_min_retries",
        "_n",
        "_ratio",
        "_rejected",
        "_retries",
        "_width",
        "_window_s",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries: int = 3,
        window_s: float = 10.0,
        *,
        clock: Clock,
        buckets: int = 10,
    ) -> None:
        if not ratio >= 0.0:
            raise ValueError(f"RetryBudget.ratio must be ≥ 0, not {ratio!r}")
        if min_retries < 0:
            raise ValueError(f"RetryBudget.min_retries must be ≥ 0, not {min_retries!r}")
        if not window_s > 0.0 or buckets < 1:
            raise ValueError("RetryBudget.window_s must be > 0 and buckets ≥ 1")
        self._ratio = float(ratio)
        self._min_retries = min_retries
        self._window_s = float(window_s)
        self._clock = clock
        self._n = buckets
        self._width = window_s / buckets
        self._b_first = [0] * buckets
        self._b_retry = [0] * buckets
        self._first = 0
        self._retries = 0
        self._rejected = 0
        self._head = math.floor(clock.now() / self._width)

    def record_first_attempt(self) -> None:
        """A job's first attempt went out: it adds ``ratio`` of a retry to the budget."""
        bid = math.floor(self._clock.now() / self._width)
        if bid != self._head:
            self._advance(bid)
        self._b_first[bid % self._n] += 1
        self._first += 1

    def can_spend(self) -> bool:
        """Would :meth:`try_spend` grant a retry now? Records nothing."""
        bid = math.floor(self._clock.now() / self._width)
        if bid != self._head:
            self._advance(bid)
        cap = self._ratio * self._first
        if cap < self._min_retries:
            cap = self._min_retries
        return self._retries + 1 <= cap

    def try_spend(self) -> bool:
        """Ask to retry: True records the retry, False means "not now"."""
        if self.can_spend():
            self._b_retry[self._head % self._n] += 1
            self._retries += 1
            return True
        self._rejected += 1
        return False

    def reject(self) -> None:
        """Count a retry the caller did not ask for because :meth:`can_spend` said no."""
        self._rejected += 1

    def available(self) -> int:
        """How many retries the budget would grant right now."""
        self._advance(math.floor(self._clock.now() / self._width))
        cap = max(float(self._min_retries), self._ratio * self._first)
        return max(0, math.floor(cap - self._retries))

    def snapshot(self) -> dict[str, Any]:
        """The budget as a plain dict: ``first_attempts`` and ``retries`` in the window,
        ``available``, ``rejected`` (ever), ``ratio``, ``min_retries``, ``window_s``."""
        available = self.available()
        return {
            "first_attempts": self._first,
            "retries": self._retries,
            "available": available,
            "rejected": self._rejected,
            "ratio": self._ratio,
            "min_retries": self._min_retries,
            "window_s": self._window_s,
        }

    def _advance(self, bid: int) -> None:
        """Move the window's head to bucket ``bid``, emptying the buckets it passes."""
        head = self._head
        if bid <= head:
            return
        n = self._n
        if bid - head >= n:
            for i in range(n):
                self._b_first[i] = self._b_retry[i] = 0
            self._first = self._retries = 0
        else:
            b_first, b_retry = self._b_first, self._b_retry
            for b in range(head + 1, bid + 1):
                i = b % n
                self._first -= b_first[i]
                self._retries -= b_retry[i]
                b_first[i] = b_retry[i] = 0
        self._head = bid


# --------------------------------------------------------------------------- concurrency


class ConcurrencyLimit(Protocol):
    """How many calls may be in flight to one provider at once.

    ``try_acquire()`` before a call; exactly one ``release()`` after every True, with the call's
    latency and whether it was *dropped* (timeout, 429, 5xx): the signal of overload.
    """

    @property
    def limit(self) -> int:
        """The current limit."""
        ...

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        ...

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        ...

    def release(self, latency_s: float, dropped: bool = False) -> None:
        """Give a slot back, teaching the limit from the call's latency and outcome."""
        ...


class FixedLimit:
    """A fixed concurrency limit (a bulkhead): releases teach it nothing."""

    __slots__ = ("_in_flight", "_limit")

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError(f"FixedLimit.max_concurrent must be ≥ 1, not {max_concurrent!r}")
        self._limit = max_concurrent
        self._in_flight = 0

    @property
    def limit(self) -> int:
        """The fixed limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if fewer than ``limit`` calls are in flight."""
        if self._in_flight < self._limit:
            self._in_flight += 1
            return True
        return False

    def release(self, latency_s: float = 0.0, dropped: bool = False) -> None:
        """Give a slot back."""
        if self._in_flight <= 0:
            raise RuntimeError("FixedLimit.release() without a matching try_acquire()")
        self._in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """``{"limit", "in_flight"}``."""
        return {"limit": self._limit, "in_flight": self._in_flight}


class AIMDLimit:
    """Additive increase, multiplicative decrease (Netflix concurrency-limits ``AIMDLimit``).

    A dropped call, or one slower than ``timeout_s``, multiplies the limit by ``backoff_ratio``;
    a good call adds 1 when the limit is actually being used (in flight, counting the call just
    released, ≥ limit / 2), so an idle provider does not earn a limit it never tested. The
    limit stays within [``minimum``, ``maximum``]. ``timeout_s`` defaults to 120 s, not the
    library's 5 s: image generation routinely takes tens of seconds.
    """

    __slots__ = ("_backoff", "_in_flight", "_limit", "_maximum", "_minimum", "_timeout_s")

    def __init__(
        self,
        initial: int = 20,
        minimum: int = 1,
        maximum: int = 200,
        backoff_ratio: float = 0.9,
        timeout_s: float = 120.0,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("AIMDLimit needs 1 ≤ minimum ≤ initial ≤ maximum")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"AIMDLimit.backoff_ratio must be in (0, 1), not {backoff_ratio!r}")
        self._limit = initial
        self._minimum = minimum
        self._maximum = maximum
        self._backoff = backoff_ratio
        self._timeout_s = timeout_s
        self._in_flight = 0

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if fewer than ``limit`` calls are in flight."""
        if self._in_flight < self._limit:
            self._in_flight += 1
            return True
        return False

    def release(self, latency_s: float, dropped: bool = False) -> None:
        """Give a slot back; decrease on a drop or a timeout, increase on a busy success."""
        in_flight = self._in_flight
        if in_flight <= 0:
            raise RuntimeError("AIMDLimit.release() without a matching try_acquire()")
        self._in_flight = in_flight - 1
        if dropped or latency_s > self._timeout_s:
            limit = int(self._limit * self._backoff)
            self._limit = limit if limit > self._minimum else self._minimum
        elif in_flight * 2 >= self._limit and self._limit < self._maximum:
            self._limit += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"limit", "in_flight"}``."""
        return {"limit": self._limit, "in_flight": self._in_flight}


class GradientLimit:
    """A latency-gradient limit after Netflix's ``Gradient2Limit``.

    Compares each call's latency (short) with a long exponential average of latencies
    (``long_window`` samples, a plain mean over the first 10): with
    ``gradient = clamp(rtt_tolerance · long / short, 0.5, 1)`` the limit moves toward
    ``limit · gradient + queue_size``, smoothed by ``smoothing``. Unlike the original, a dropped
    call multiplies the limit by ``backoff_ratio`` (Gradient2 ignores drops and can climb to its
    maximum under steady timeouts: concurrency-limits #137, #176). Increases are skipped while
    the limit is not being used (in flight < limit / 2).
    """

    __slots__ = (
        "_backoff",
        "_estimate",
        "_in_flight",
        "_long",
        "_long_count",
        "_long_factor",
        "_maximum",
        "_minimum",
        "_queue_size",
        "_smoothing",
        "_tolerance",
    )

    _WARMUP = 10

    def __init__(
        self,
        initial: int = 20,
        minimum: int = 1,
        maximum: int = 200,
        *,
        smoothing: float = 0.2,
        rtt_tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: int = 4,
        backoff_ratio: float = 0.9,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("GradientLimit needs 1 ≤ minimum ≤ initial ≤ maximum")
        if not 0.0 < smoothing <= 1.0 or rtt_tolerance < 1.0 or long_window < 1:
            raise ValueError("GradientLimit needs 0 < smoothing ≤ 1, rtt_tolerance ≥ 1")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError("GradientLimit.backoff_ratio must be in (0, 1)")
        self._estimate = float(initial)
        self._minimum = minimum
        self._maximum = maximum
        self._smoothing = smoothing
        self._tolerance = rtt_tolerance
        self._long_factor = 2.0 / (long_window + 1)
        self._queue_size = queue_size
        self._backoff = backoff_ratio
        self._long = 0.0
        self._long_count = 0
        self._in_flight = 0

    @property
    def limit(self) -> int:
        """The current limit."""
        return int(self._estimate)

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if fewer than ``limit`` calls are in flight."""
        if self._in_flight < int(self._estimate):
            self._in_flight += 1
            return True
        return False

    def release(self, latency_s: float, dropped: bool = False) -> None:
        """Give a slot back and move the limit along the latency gradient."""
        in_flight = self._in_flight
        if in_flight <= 0:
            raise RuntimeError("GradientLimit.release() without a matching try_acquire()")
        self._in_flight = in_flight - 1
        estimate = self._estimate
        if dropped:
            estimate *= self._backoff
            self._estimate = estimate if estimate > self._minimum else float(self._minimum)
            return
        if latency_s <= 0.0:
            return
        if self._long_count < self._WARMUP:
            self._long_count += 1
            self._long += (latency_s - self._long) / self._long_count
        else:
            self._long += (latency_s - self._long) * self._long_factor
        if self._long / latency_s > 2.0:
            self._long *= 0.95  # the long average lags a sudden speed-up: let it catch up
        if in_flight * 2 < estimate:
            return
        gradient = self._tolerance * self._long / latency_s
        gradient = 0.5 if gradient < 0.5 else (1.0 if gradient > 1.0 else gradient)
        target = estimate * gradient + self._queue_size
        estimate = estimate * (1.0 - self._smoothing) + target * self._smoothing
        if estimate < self._minimum:
            estimate = float(self._minimum)
        elif estimate > self._maximum:
            estimate = float(self._maximum)
        self._estimate = estimate

    def snapshot(self) -> dict[str, Any]:
        """``{"limit", "in_flight", "estimate", "long_latency_s"}``."""
        return {
            "limit": int(self._estimate),
            "in_flight": self._in_flight,
            "estimate": self._estimate,
            "long_latency_s": self._long if self._long_count else None,
        }
