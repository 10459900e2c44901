"""What a simulation counts while it runs, and the summary it makes of it at the end.

Counting is O(1) per event: totals, per-instance counters, per-bucket time series (lists
indexed by ``int((t - start) / bucket_s)``), and three compact float arrays per finished job
(finish time, latency, provider time) for the percentiles, which numpy computes at the end.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagerouter.errors import ImageRouterError, NoProviderAvailable
from imagerouter.generation import Attempt
from imagerouter.resilience.breaker import BreakerState, BreakerTransition

__all__ = ["Metrics", "Transition", "count_failovers", "give_up_reason"]

_PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class Transition:
    """One breaker transition, on the run's clock (seconds since the start)."""

    at_s: float
    name: str
    from_state: str
    to_state: str
    reason: str
    open_for_s: float | None

    @classmethod
    def of(cls, transition: BreakerTransition, start: float) -> Transition:
        """The router's transition, timed from ``start``."""
        return cls(
            round(transition.at - start, 6),
            transition.name,
            transition.from_state.value,
            transition.to_state.value,
            transition.reason,
            transition.open_for_s,
        )


def give_up_reason(error: ImageRouterError) -> str:
    """A short key for why a job failed: the router's reason (``deadline``, ``retry_budget``,
    …) or the class of the provider error that ended it (``ContentRejected``)."""
    if isinstance(error, NoProviderAvailable):
        return error.reason
    return type(error).__name__


def count_failovers(providers: Iterable[str]) -> int:
    """How many times a job's successive calls moved to another provider instance."""
    count, previous = 0, None
    for provider in providers:
        if previous is not None and provider != previous:
            count += 1
        previous = provider
    return count


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {f"p{q}": None for q in _PERCENTILES} | {"mean": None, "max": None}
    qs = np.percentile(values, _PERCENTILES)
    out: dict[str, float | None] = {
        f"p{q}": round(float(v), 4) for q, v in zip(_PERCENTILES, qs, strict=True)
    }
    out["mean"] = round(float(values.mean()), 4)
    out["max"] = round(float(values.max()), 4)
    return out


class Metrics:
    """Counters of one run. ``instances`` are the router's provider instances, in order."""

    def __init__(
        self,
        instances: Sequence[str],
        *,
        start: float,
        duration_s: float,
        bucket_s: float,
        cost_usd: dict[str, dict[str, float | None]] | None = None,
    ) -> None:
        self.instances = list(instances)
        self.index = {name: i for i, name in enumerate(self.instances)}
        self.start = start
        self.duration_s = duration_s
        self.bucket_s = bucket_s
        self.n_buckets = max(1, math.ceil(duration_s / bucket_s))
        size = self.n_buckets + 1
        n = len(self.instances)
        self.arrivals = [0] * size
        self.completed = [0] * size
        self.failed = [0] * size
        self.failed_servable = [0] * size
        self.calls = [[0] * size for _ in range(n)]
        self.served = [[0] * size for _ in range(n)]
        self.errors = [[0] * size for _ in range(n)]
        self.rate_limited = [[0] * size for _ in range(n)]
        self.calls_total = [0] * n
        self.served_total = [0] * n
        self.cancelled = [0] * n
        self.usd = [0.0] * n
        self.cancelled_usd = [0.0] * n
        self.error_classes: list[Counter[str]] = [Counter() for _ in range(n)]
        self.failed_by: Counter[str] = Counter()
        #: Jobs that gave up while a candidate could still have served them, by reason.
        self.failed_while_servable: Counter[str] = Counter()
        self.jobs_arrived = 0
        self.jobs_completed = 0
        self.jobs_failed = 0
        self.credits = 0
        self.refunded_credits = 0
        self.failovers = 0
        self.jobs_failed_over = 0
        self.calls_per_job: Counter[int] = Counter()
        #: Times a job was told to wait (for a cooldown, a breaker, a slot, a backoff).
        self.waits = 0
        self.finish_s = array("f")
        self.latency_s = array("f")
        self.provider_s = array("f")
        self.transitions: list[Transition] = []

    # ------------------------------------------------------------------ counting

    def bucket(self, t: float) -> int:
        """The time-series bucket of monotonic time ``t`` (the last one past the end)."""
        b = int((t - self.start) / self.bucket_s)
        return b if b < self.n_buckets else self.n_buckets

    # The three below run for every job or call: the bucket is worked out inline (as bucket()).

    def arrival(self, t: float) -> None:
        """A job arrived."""
        self.jobs_arrived += 1
        b = int((t - self.start) / self.bucket_s)
        self.arrivals[b if b < self.n_buckets else self.n_buckets] += 1

    def call_started(self, i: int, t: float) -> None:
        """Instance ``i`` was called."""
        b = int((t - self.start) / self.bucket_s)
        self.calls[i][b if b < self.n_buckets else self.n_buckets] += 1
        self.calls_total[i] += 1

    def call_failed(self, i: int, t: float, error_class: str) -> None:
        """A call to instance ``i`` ended in an error of ``error_class``."""
        b = self.bucket(t)
        self.errors[i][b] += 1
        if error_class == "RateLimited":
            self.rate_limited[i][b] += 1
        self.error_classes[i][error_class] += 1

    def call_cancelled(self, i: int, cost_usd: float | None) -> None:
        """A call to instance ``i`` was abandoned in flight (it lost a hedge)."""
        self.cancelled[i] += 1
        if cost_usd:
            self.cancelled_usd[i] += cost_usd

    def job_completed(
        self,
        i: int,
        t: float,
        arrived: float,
        provider_s: float,
        credits: int,
        cost_usd: float | None,
        attempts: Sequence[Attempt],
    ) -> None:
        """A job got its image from instance ``i`` at ``t``."""
        b = int((t - self.start) / self.bucket_s)
        if b > self.n_buckets:
            b = self.n_buckets
        self.completed[b] += 1
        self.served[i][b] += 1
        self.served_total[i] += 1
        self.jobs_completed += 1
        self.credits += credits
        if cost_usd:
            self.usd[i] += cost_usd
        self.finish_s.append(t - self.start)
        self.latency_s.append(t - arrived)
        self.provider_s.append(provider_s)
        if len(attempts) == 1:  # the usual job: one call, and it succeeded
            self.calls_per_job[1] += 1
        else:
            self._attempts(attempts)

    def job_failed(
        self, t: float, error: ImageRouterError, credits: int, attempts: Sequence[Attempt]
    ) -> None:
        """A job failed at ``t`` (its credits are refunded)."""
        self.failed[self.bucket(t)] += 1
        self.jobs_failed += 1
        self.refunded_credits += credits
        reason = give_up_reason(error)
        self.failed_by[reason] += 1
        if isinstance(error, NoProviderAvailable) and error.failed_while_servable:
            self.failed_while_servable[reason] += 1
            self.failed_servable[self.bucket(t)] += 1
        self._attempts(attempts)

    def _attempts(self, attempts: Sequence[Attempt]) -> None:
        # count_failovers over the calls made (skips left out), in one pass.
        calls, moved, previous = 0, 0, None
        for attempt in attempts:
            if attempt.outcome != "skipped":
                calls += 1
                if previous is not None and attempt.provider != previous:
                    moved += 1
                previous = attempt.provider
        self.calls_per_job[calls] += 1
        if moved:
            self.failovers += moved
            self.jobs_failed_over += 1

    def transition(self, transition: BreakerTransition) -> None:
        """A breaker of the router changed state."""
        self.transitions.append(Transition.of(transition, self.start))

    # ------------------------------------------------------------------ summary

    def trips(self) -> dict[str, int]:
        """Breaker trips (transitions to open) per instance."""
        trips = dict.fromkeys(self.instances, 0)
        for t in self.transitions:
            if t.to_state == BreakerState.OPEN.value:
                trips[t.name] = trips.get(t.name, 0) + 1
        return trips

    def latency(self) -> dict[str, dict[str, float | None]]:
        """Percentiles of job latency (arrival to image), of its provider time (the call
        that delivered) and of the rest (queueing: waits, backoffs, failed attempts)."""
        latency = np.frombuffer(self.latency_s, dtype=np.float32).astype(np.float64)
        provider = np.frombuffer(self.provider_s, dtype=np.float32).astype(np.float64)
        return {
            "total_s": _percentiles(latency),
            "provider_s": _percentiles(provider),
            "queueing_s": _percentiles(np.maximum(latency - provider, 0.0)),
        }

    def timeline(self) -> dict[str, Any]:
        """The time series, one value per bucket: arrivals, outcomes, per-instance calls,
        jobs served, errors and 429s, and latency percentiles of the jobs finished."""
        n = self.n_buckets + (1 if any(self.arrivals[-1:]) or self.completed[-1] else 0)
        finish = np.frombuffer(self.finish_s, dtype=np.float32)
        latency = np.frombuffer(self.latency_s, dtype=np.float32)
        index = np.minimum((finish / self.bucket_s).astype(np.int64), self.n_buckets)
        quantiles: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
        if len(index):
            order = np.argsort(index, kind="stable")
            sorted_index = index[order]
            bounds = np.searchsorted(sorted_index, np.arange(n + 1))
            for b in range(n):
                chunk = latency[order[bounds[b] : bounds[b + 1]]]
                for q, values in quantiles.items():
                    values.append(
                        round(float(np.percentile(chunk, int(q[1:]))), 3) if len(chunk) else None
                    )
        else:
            for values in quantiles.values():
                values.extend([None] * n)
        per_instance = {
            name: {
                "calls": self.calls[i][:n],
                "served": self.served[i][:n],
                "errors": self.errors[i][:n],
                "rate_limited": self.rate_limited[i][:n],
            }
            for i, name in enumerate(self.instances)
        }
        return {
            "bucket_s": self.bucket_s,
            "arrivals": self.arrivals[:n],
            "completed": self.completed[:n],
            "failed": self.failed[:n],
            "failed_while_servable": self.failed_servable[:n],
            "latency_s": quantiles,
            "instances": per_instance,
        }

    def instances_summary(self) -> dict[str, dict[str, Any]]:
        """Per instance: calls, jobs served and their share, errors by class, hedges
        cancelled, breaker trips and provider dollars."""
        trips = self.trips()
        served = sum(self.served_total) or 1
        return {
            name: {
                "calls": self.calls_total[i],
                "served": self.served_total[i],
                "share": round(self.served_total[i] / served, 4),
                "errors": dict(sorted(self.error_classes[i].items())),
                "cancelled": self.cancelled[i],
                "breaker_trips": trips.get(name, 0),
                "cost_usd": round(self.usd[i], 2),
            }
            for i, name in enumerate(self.instances)
        }
