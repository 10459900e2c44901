"""Pacing toward a key that answers 429 without telling its budget: a call rate learned from the
429s themselves (grown a little by each success, cut by each episode of 429s, as TCP learns a
window from its losses). Pure and O(1); time comes only from the injected clock.

Why: a Retry-After window says when the key takes *one* call again, not how many. Every job
waiting on the key wakes at the window's end and calls; the key takes the few its limit allows
and answers the rest with a 429 and a new window. No request lands inside a window, but most
of the calls are wasted, and a provider may count them against the key. Providers that send
their budget (OpenAI's ``x-ratelimit-*``) are paced by it instead (``TokenBucket``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagerouter.clock import Clock
from imagerouter.resilience.ranges import refuse_out_of_range

__all__ = ["PaceConfig", "RatePace"]


@dataclass(frozen=True, slots=True)
class PaceConfig:
    """How a key's pace is learned from its 429s.

    Attributes:
        enabled: learn a pace at all (off: every job waiting on a key calls at its window's end).
        initial_per_s: the first pace when the 429 gives no wait to start from (a Retry-After
            of 0; a 429 without one is given a learned cooldown, whose length is used) and the
            key took fewer calls than that lately.
        min_per_s: the pace never goes below this.
        max_per_s: nor above this (a pace grown past every real limit is as good as none).
        slow_start: factor a call the key takes multiplies the pace by until the pace's first
            decrease: the first pace is a guess, so it grows fast to the key's real limit.
        increase: factor a call the key takes (any answer but a 429) multiplies the pace by
            after that (the probe for headroom).
        decrease: factor a 429 multiplies the pace by (once an episode: 429s answering calls
            sent before the last decrease were already counted); in a storm never below one
            call per the key's own Retry-After.
        forget_s: a key without a 429 for this long is no longer paced.
    """

    enabled: bool = True
    initial_per_s: float = 1.0
    min_per_s: float = 0.2
    max_per_s: float = 10_000.0
    slow_start: float = 1.25
    increase: float = 1.01
    decrease: float = 0.75
    forget_s: float = 30.0

    def __post_init__(self) -> None:
        """Reject values that would make the pace meaningless, naming the field."""
        checks: tuple[tuple[str, bool], ...] = (
            ("min_per_s", self.min_per_s > 0.0),
            ("initial_per_s", self.initial_per_s >= self.min_per_s),
            ("max_per_s", self.max_per_s >= self.initial_per_s),
            ("slow_start", self.slow_start >= 1.0),
            ("increase", self.increase >= 1.0),
            ("decrease", 0.0 < self.decrease < 1.0),
            ("forget_s", self.forget_s > 0.0),
        )
        refuse_out_of_range(self, checks)


class RatePace:
    """At most ``rate_per_s`` call starts a second toward one key, spaced evenly, the rate learned
    from the key's 429s.

    It starts at the rate the key took calls at lately (``recent_per_s``), or, when that is
    lower, at one call per Retry-After (a key that needs ``w`` seconds for its next call is
    paced at ``1 / w``); :meth:`rate_limited` lowers it and :meth:`succeeded` raises it.
    Calls are spaced by ``1 / rate_per_s`` with no burst, so the jobs a window held back reach
    the key one by one at its end instead of all at once.

    In a storm (a key answering 429 to every call) the pace holds the key back no longer than
    the key itself asks: a cut stops at one call per the Retry-After that caused it, so one
    call a window probes the key, and the first call it takes ends the pace
    (:attr:`after_refusals`). Without that, a key answering 429 to everything for half a
    minute (one call a window, one cut a window) was paced at ``min_per_s`` when it
    recovered, and the jobs waiting on it ran out of time behind a pace it no longer needed;
    restarting slow start from one call per window was still too slow for jobs with seconds
    to live.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_decreased_at",
        "_limited_at",
        "_next_at",
        "_rate",
        "_refused_in_row",
        "_slow_start",
        "_started_at",
    )

    def __init__(
        self,
        clock: Clock,
        config: PaceConfig,
        first_wait_s: float | None,
        recent_per_s: float = 0.0,
    ) -> None:
        self._clock = clock
        self._config = config
        rate = 1.0 / first_wait_s if first_wait_s else config.initial_per_s
        rate = max(rate, recent_per_s)
        self._rate = min(config.max_per_s, max(config.min_per_s, rate))
        now = clock.now()
        self._decreased_at = now
        self._limited_at = now
        self._next_at = now
        self._started_at = now
        self._slow_start = True
        self._refused_in_row = 1  # the 429 that made this pace

    @property
    def rate_per_s(self) -> float:
        """Call starts a second the key is paced at now."""
        return self._rate

    def expired(self, now: float) -> bool:
        """Has the key gone ``forget_s`` without a 429 (so it need not be paced any more)?"""
        return now - self._limited_at >= self._config.forget_s

    def time_until(self, now: float) -> float:
        """Seconds until the next call may start (0.0 if now)."""
        wait = self._next_at - now
        return wait if wait > 0.0 else 0.0

    def try_take(self, now: float) -> bool:
        """Start a call now if the pace allows it (and book the next start one interval on)."""
        next_at = self._next_at
        if next_at > now:
            return False
        self._next_at = (next_at if next_at > now - 1.0 / self._rate else now) + 1.0 / self._rate
        self._started_at = now
        return True

    @property
    def last_start(self) -> float:
        """When the last call the pace let through started (monotonic)."""
        return self._started_at

    @property
    def after_refusals(self) -> bool:
        """Did two 429s in a row, the one that made the pace included, meet no call taken
        between them (a storm, not a pace a little too fast)? Then a call taken says the storm
        is over, and nothing learned during it holds: the router forgets the pace."""
        return self._refused_in_row > 1

    def succeeded(self) -> None:
        """A call the key took (any answer but a 429): there may be headroom."""
        self._refused_in_row = 0
        factor = self._config.slow_start if self._slow_start else self._config.increase
        rate = self._rate * factor
        self._rate = rate if rate < self._config.max_per_s else self._config.max_per_s

    def rate_limited(self, sent_at: float, retry_after_s: float | None = None) -> None:
        """A 429 answering a call started at monotonic ``sent_at``: slow down, once an episode.
        In a storm (the key took no call since the last cut) not below one call per its
        ``retry_after_s``: it refuses whatever the pace, and a slower one only notices later
        that the storm is over."""
        now = self._clock.now()
        self._limited_at = now
        if sent_at < self._decreased_at:
            return  # sent at the old pace; this episode already slowed it
        cfg = self._config
        floor = cfg.min_per_s
        if self._refused_in_row and retry_after_s and 1.0 / retry_after_s > floor:
            floor = min(1.0 / retry_after_s, self._rate)  # a cut never speeds the pace up
        rate = self._rate * cfg.decrease
        self._rate = rate if rate > floor else floor
        self._decreased_at = now
        self._slow_start = False
        self._refused_in_row += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"rate_per_s", "next_in_s", "slow_start"}``."""
        return {
            "rate_per_s": self._rate,
            "next_in_s": self.time_until(self._clock.now()),
            "slow_start": self._slow_start,
        }
