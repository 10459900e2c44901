"""A provider instance: one configured provider (plugin + key + base URL) and the resilience
state the router keeps for it: breaker, health, Retry-After cooldown, concurrency limit, the
request budget its rate-limit headers announce, the retry budget that caps retries into it, and
its spend caps."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagerouter.clock import Clock
from imagerouter.config import RetryBudgetSettings
from imagerouter.provider import Provider
from imagerouter.resilience.breaker import BreakerState, CircuitBreaker
from imagerouter.resilience.concurrency import AIMDLimit, FixedLimit
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthScore
from imagerouter.resilience.pace import RatePace
from imagerouter.resilience.retry_budget import RetryBudget
from imagerouter.resilience.spend import SpendMeter
from imagerouter.resilience.token_bucket import TokenBucket

__all__ = ["PACED_BY_429S", "ProviderInstance", "Unavailable", "retry_budget_of"]

_OPEN = BreakerState.OPEN
#: The reason of a skip for the pace learned from 429s (not a window, not a budget).
PACED_BY_429S = "paced by its 429s"


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why an instance cannot take a call now, and (when known) when it can again."""

    kind: str  # "breaker_open", "cooldown", "paced", "concurrency", "retry_budget", "spend_cap"
    reason: str
    ready_at: float | None = None


@dataclass(slots=True)
class ProviderInstance:
    """A provider and the state that decides whether the router may call it."""

    name: str
    provider: Provider
    breaker: CircuitBreaker
    health: HealthScore
    cooldowns: Cooldowns
    clock: Clock
    limit: FixedLimit | AIMDLimit | None = None
    #: Learned from x-ratelimit-* headers; None until the provider sent them.
    budget: TokenBucket | None = None
    #: Learned from 429s when the provider sends no such headers; None while it sends none.
    pace: RatePace | None = None
    weight: float = 1.0
    #: Caps retries into this instance (calls of jobs that already failed on it); built from
    #: the default settings when not given.
    retry_budget: RetryBudget = field(default=None)  # type: ignore[assignment]
    #: Spend in the current hour and day against the configured caps; None when uncapped.
    spend: SpendMeter | None = None

    def __post_init__(self) -> None:
        if self.retry_budget is None:
            self.retry_budget = retry_budget_of(RetryBudgetSettings(), self.clock)

    def unavailable(self, now: float, paced: bool = True) -> Unavailable | None:
        """Why this instance must be skipped now, or None if it may be called.

        Checks cheap state only; the breaker's half-open permit and the concurrency slot are
        reserved by :meth:`acquire` once the instance is chosen. ``paced=False`` leaves out
        the pace learned from 429s (never a Retry-After window or an announced budget).
        """
        until = self.cooldowns.until(self.name)
        if until is not None:
            return Unavailable("cooldown", f"Retry-After cooldown until +{until - now:.2f}s", until)
        if self.budget is not None and self.budget.time_until() > 0:
            ready = now + self.budget.time_until()
            return Unavailable("paced", "x-ratelimit budget spent", ready)
        if self.pace is not None:
            if self.pace.expired(now):
                self.pace = None  # forget_s without a 429, whether or not a call succeeded
            elif paced and (wait := self.pace.time_until(now)) > 0.0:
                return Unavailable("paced", PACED_BY_429S, self._paced_ready(now + wait, now))
        state = self.breaker.state
        if state is _OPEN:
            probe_at = self.breaker.next_probe_at
            return Unavailable("breaker_open", "breaker open", probe_at)
        if self.limit is not None and self.limit.in_flight >= self.limit.limit:
            return Unavailable("concurrency", f"concurrency full ({self.limit.limit})")
        if self.spend is not None and (capped := self.spend.capped()) is not None:
            return Unavailable("spend_cap", capped.reason, now + capped.frees_in_s)
        return None

    def charge(self, cost_usd: float | None, images: int) -> None:
        """A call completed: count its cost (the catalog's per-image price × images)."""
        if self.spend is not None and cost_usd:
            self.spend.record(cost_usd * max(1, images))

    def admits(self, now: float) -> bool:
        """Would a call be let through now (breaker permit included)? Reserves nothing."""
        return self.unavailable(now) is None and self.breaker.would_allow()

    def acquire(self, paced: bool = True) -> Unavailable | None:
        """Reserve a breaker permit, a concurrency slot and a budget token or a paced start
        (none with ``paced=False``), or say why not."""
        if not self.breaker.allow():
            return Unavailable("breaker_open", "breaker half-open: no probe permit left")
        if self.limit is not None and not self.limit.try_acquire():
            self.breaker.record_ignored()
            return Unavailable("concurrency", f"concurrency full ({self.limit.limit})")
        if self.budget is not None and not self.budget.try_take():
            self._give_back()
            return Unavailable("paced", "x-ratelimit budget spent")
        if paced and self.pace is not None and not self.pace.try_take(now := self.clock.now()):
            self._give_back()
            ready = self._paced_ready(now + self.pace.time_until(now), now)
            return Unavailable("paced", PACED_BY_429S, ready)
        return None

    def _paced_ready(self, next_start: float, now: float) -> float:
        """When a job held by the pace should look again. In a storm one call a window probes
        the key, and its answer may end the pace (:attr:`RatePace.after_refusals`): look again
        when that answer is due (the key's calls' p95 after the probe started), not a whole
        window later at the next start."""
        pace = self.pace
        if pace is None or not pace.after_refusals:
            return next_start
        answer = pace.last_start + (self.health.p95() or 0.0)
        return answer if now < answer < next_start else next_start

    def _give_back(self) -> None:
        """Return the breaker permit and concurrency slot :meth:`acquire` took."""
        self.breaker.record_ignored()
        if self.limit is not None:
            self.limit.release(0.0, dropped=False)


def retry_budget_of(settings: RetryBudgetSettings, clock: Clock) -> RetryBudget:
    """A provider instance's retry budget, as the router's settings describe it."""
    return RetryBudget(settings.ratio, settings.min_retries, settings.window_s, clock=clock)
