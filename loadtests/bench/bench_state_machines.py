"""Micro-benchmark of the resilience state machines: nanoseconds per call on the hot path.

Run ``python -m loadtests.bench.bench_state_machines [iterations]``. Each case drives a machine
on a FakeClock that moves 1 ms per iteration (so time windows, refills and decays do real work),
and reports ns per iteration including that ``clock.advance`` call; the ``baseline`` line is the
loop plus the advance alone, to subtract by eye. Not a test: it asserts nothing.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from imagerouter.clock import FakeClock
from imagerouter.resilience.backoff import full_jitter
from imagerouter.resilience.breaker import BreakerConfig, CircuitBreaker
from imagerouter.resilience.concurrency import AIMDLimit
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthConfig, HealthScore
from imagerouter.resilience.retry_budget import RetryBudget
from imagerouter.resilience.token_bucket import TokenBucket

Case = Callable[[FakeClock, int], None]


def baseline(clock: FakeClock, n: int) -> None:
    """The loop and the clock alone."""
    advance = clock.advance
    for _ in range(n):
        advance(0.001)


def breaker_count(clock: FakeClock, n: int) -> None:
    """allow() + record_success() on a closed count-window breaker, 1 failure in 10."""
    b = CircuitBreaker("p", BreakerConfig(consecutive_failures=0), clock)
    advance, allow, ok, fail = clock.advance, b.allow, b.record_success, b.record_failure
    for i in range(n):
        advance(0.001)
        if allow():
            if i % 10:
                ok(0.5)
            else:
                fail(0.5)


def breaker_time(clock: FakeClock, n: int) -> None:
    """allow() + record_success() on a closed time-window breaker with slow-call tracking."""
    config = BreakerConfig(window="time", consecutive_failures=0, slow_call_s=30.0)
    b = CircuitBreaker("p", config, clock)
    advance, allow, ok, fail = clock.advance, b.allow, b.record_success, b.record_failure
    for i in range(n):
        advance(0.001)
        if allow():
            if i % 10:
                ok(0.5)
            else:
                fail(0.5)


def breaker_open(clock: FakeClock, n: int) -> None:
    """allow() on an open breaker (the rejection path)."""
    b = CircuitBreaker("p", BreakerConfig(open_base_s=1e9, open_max_s=1e9), clock)
    for _ in range(5):
        b.record_failure()
    advance, allow = clock.advance, b.allow
    for _ in range(n):
        advance(0.001)
        allow()


def health_record(clock: FakeClock, n: int) -> None:
    """record(success, latency)."""
    h = HealthScore(HealthConfig(), clock)
    advance, record = clock.advance, h.record
    for i in range(n):
        advance(0.001)
        record(i % 20 != 0, 0.5 + (i % 7) * 0.1)


def health_score(clock: FakeClock, n: int) -> None:
    """The score property, read (as the router ranks candidates)."""
    h = HealthScore(HealthConfig(), clock)
    for i in range(1000):
        h.record(i % 20 != 0, 0.5)
    advance = clock.advance
    for _ in range(n):
        advance(0.001)
        h.score  # noqa: B018


def health_record_p95(clock: FakeClock, n: int) -> None:
    """record() then p95() (hedging reads it on every attempt)."""
    h = HealthScore(HealthConfig(), clock)
    advance, record, p95 = clock.advance, h.record, h.p95
    for i in range(n):
        advance(0.001)
        record(True, 0.5 + (i % 97) * 0.01)
        p95()


def bucket_take(clock: FakeClock, n: int) -> None:
    """try_take() on a bucket refilling at 500/s."""
    b = TokenBucket(500.0, 50, clock)
    advance, take = clock.advance, b.try_take
    for _ in range(n):
        advance(0.001)
        take()


def budget(clock: FakeClock, n: int) -> None:
    """record_first_attempt() + try_spend() on a 10 s, 10-bucket budget."""
    rb = RetryBudget(clock=clock)
    advance, first, spend = clock.advance, rb.record_first_attempt, rb.try_spend
    for i in range(n):
        advance(0.001)
        first()
        if i % 5 == 0:
            spend()


def cooldown_active(clock: FakeClock, n: int) -> None:
    """active() on a key with a running cooldown."""
    c = Cooldowns(clock)
    c.start("openai/k1", 1e9)
    advance, active = clock.advance, c.active
    for _ in range(n):
        advance(0.001)
        active("openai/k1")


def aimd(clock: FakeClock, n: int) -> None:
    """try_acquire() + release() on an AIMD limit."""
    limit = AIMDLimit()
    advance, acquire, release = clock.advance, limit.try_acquire, limit.release
    for i in range(n):
        advance(0.001)
        if acquire():
            release(0.5, i % 50 == 0)


def backoff(clock: FakeClock, n: int) -> None:
    """full_jitter() with a seeded generator (the routing plan's backoff)."""
    rng = random.Random(1)
    advance = clock.advance
    for i in range(n):
        advance(0.001)
        full_jitter(i % 6, rng=rng)


CASES: tuple[tuple[str, Case], ...] = (
    ("baseline (loop + clock.advance)", baseline),
    ("breaker allow+record, count window", breaker_count),
    ("breaker allow+record, time window", breaker_time),
    ("breaker allow, open", breaker_open),
    ("health record", health_record),
    ("health score read", health_score),
    ("health record + p95", health_record_p95),
    ("token bucket try_take", bucket_take),
    ("retry budget first+spend", budget),
    ("cooldowns active", cooldown_active),
    ("AIMD acquire+release", aimd),
    ("backoff full_jitter", backoff),
)


def run(iterations: int = 300_000, repeats: int = 3) -> list[tuple[str, float]]:
    """Best of ``repeats`` runs of each case: (name, ns per iteration)."""
    results = []
    for name, case in CASES:
        best = float("inf")
        for _ in range(repeats):
            clock = FakeClock(1000.0)
            start = time.perf_counter_ns()
            case(clock, iterations)
            best = min(best, (time.perf_counter_ns() - start) / iterations)
        results.append((name, best))
    return results


def main(argv: list[str] | None = None) -> None:
    """Print ns per call for each case."""
    args = sys.argv[1:] if argv is None else argv
    iterations = int(args[0]) if args else 300_000
    print(f"python {sys.version.split()[0]}, {iterations:,} iterations, best of 3")
    for name, ns in run(iterations):
        print(f"{name:<40} {ns:8.0f} ns/iter")


if __name__ == "__main__":
    main()
