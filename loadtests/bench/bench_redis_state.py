"""Shared resilience state through Redis: how fast a change on one replica reaches the others,
and what a shared rate-limit check costs.

- ``cooldown``: replica A learns a Retry-After (``Cooldowns.start``, as the router does on a
  429); time until replicas B and C have applied it (their ``state.applied`` listener).
- ``breaker``: A's breaker trips (open) and is reset (closed); time until B and C adopted each.
- ``ratelimit``: latency of one ``RedisRateLimiter.check`` (a Lua token bucket) against the
  in-process ``RateLimiter.check``, and checks per second at a concurrency of 32.

Replicas are three routers with their own ``RedisState`` in this process (one event loop, so
each delay includes the loop's own scheduling), against ``$IMAGEROUTER_BENCH_REDIS_URL``
(default ``redis://127.0.0.1:6379/15``) under a private prefix, deleted afterwards.

    python -m loadtests.bench.bench_redis_state
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from typing import Any

import redis

from imagerouter.replication import RedisRateLimiter, RedisState
from imagerouter.replication.records import Record
from imagerouter.resilience.breaker import BreakerState
from imagerouter.server.ratelimit import LimitPolicy, RateLimiter
from loadtests.bench.common import median, percentile, write_results
from mockproviders import Farm, ImageSettings, Scenario
from mockproviders.bridge import farm_router

URL = os.environ.get("IMAGEROUTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROUNDS = 300
BREAKER = {"consecutive_failures": 1, "minimum_calls": 1, "open_base_s": 60.0, "open_max_s": 60.0}


def summary(delays_s: list[float]) -> dict[str, float]:
    """Milliseconds: p50, p95, p99, max."""
    ms = [d * 1000 for d in delays_s]
    return {
        "n": len(ms),
        "p50_ms": round(median(ms), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


async def propagation(prefix: str) -> dict[str, Any]:
    """Cooldown and breaker delivery delays from A to B and C."""
    config = {"router": {"breaker": BREAKER}}
    # Tiny images: this measures state propagation, not image bytes.
    async with Farm(Scenario(images=ImageSettings(png_bytes="tiny"))) as farm:
        routers = [farm_router(farm, config) for _ in range(3)]
        states = [
            RedisState(URL, router, prefix=prefix, replica_id=f"r{i}", health_interval_s=5.0)
            for i, router in enumerate(routers)
        ]
        for state in states:
            await state.start()
        assert all(state.healthy for state in states), [s.status() for s in states]
        arrived: dict[tuple[str, str], float] = {}

        def listener(replica: str) -> Any:
            def heard(record: Record) -> None:
                arrived.setdefault(
                    (replica, getattr(record, "state", record.kind)), time.monotonic()
                )

            return heard

        for state in states[1:]:
            state.applied.add(listener(state.replica_id))

        async def delivered(kind: str) -> list[float]:
            while len([k for k in arrived if k[1] == kind]) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
            return [arrived[(r, kind)] for r in ("r1", "r2")]

        a = routers[0]
        cooldowns: list[float] = []
        opens: list[float] = []
        closes: list[float] = []
        for round_number in range(ROUNDS):
            arrived.clear()
            started = time.monotonic()
            a.instances["fal"].cooldowns.start("fal", 30.0 + round_number * 0.01)
            cooldowns += [t - started for t in await delivered("cooldown")]

            breaker = a.instances["fal"].breaker
            started = time.monotonic()
            assert breaker.allow()
            breaker.record_failure()
            assert breaker.state is BreakerState.OPEN
            opens += [t - started for t in await delivered("open")]
            started = time.monotonic()
            breaker.reset()
            closes += [t - started for t in await delivered("closed")]
        statuses = [state.status() for state in states]
        for state in states:
            await state.aclose()
    return {
        "cooldown": summary(cooldowns),
        "breaker_open": summary(opens),
        "breaker_closed": summary(closes),
        "published": [s["published"] for s in statuses],
        "applied": [s["applied"] for s in statuses],
    }


async def rate_limits(prefix: str) -> dict[str, Any]:
    """One check's latency, shared (Redis) vs local, and shared checks per second."""
    policies = {"generate": LimitPolicy(rate_per_s=1e6, burst=1_000_000)}
    local = RateLimiter(policies)
    async with RedisRateLimiter(URL, policies, prefix=prefix) as shared:
        for _ in range(200):  # warm up: connection, script cache
            await shared.check("warm", "generate")
        shared_s, local_s = [], []
        for n in range(2000):
            started = time.perf_counter()
            await shared.check(f"key-{n % 50}", "generate")
            shared_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            local.check(f"key-{n % 50}", "generate")
            local_s.append(time.perf_counter() - started)
        total = 20_000
        gate = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            async with gate:
                await shared.check(f"key-{n % 50}", "generate")

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(total)))
        elapsed = time.perf_counter() - started
        fallbacks, last_error = shared.fallbacks, shared.last_error
    return {
        "fallbacks": fallbacks,
        "last_error": last_error,
        "shared_check": summary(shared_s),
        "local_check_us_p50": round(median(local_s) * 1e6, 2),
        "shared_checks_per_s_at_32": round(total / elapsed),
    }


def cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the breaker flips hundreds of times on purpose
    try:
        redis.Redis.from_url(URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        print(f"skipped: Redis is not reachable at {URL} ({exc})")
        return 0
    prefix = f"irbench:{uuid.uuid4().hex[:8]}"
    try:
        results = {"redis_url": URL, "rounds": ROUNDS}
        results["propagation"] = await propagation(prefix)
        results["rate_limits"] = await rate_limits(prefix)
    finally:
        cleanup(prefix)
    prop, rl = results["propagation"], results["rate_limits"]
    print(f"Redis state propagation A → B, C on loopback ({ROUNDS} rounds, 3 replicas):")
    for name in ("cooldown", "breaker_open", "breaker_closed"):
        s = prop[name]
        print(
            f"  {name:<15} p50 {s['p50_ms']:7.3f} ms  p95 {s['p95_ms']:7.3f} ms"
            f"  p99 {s['p99_ms']:7.3f} ms  max {s['max_ms']:7.3f} ms"
        )
    s = rl["shared_check"]
    print(
        f"Rate-limit check: shared p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms;"
        f" local p50 {rl['local_check_us_p50']} µs;"
        f" shared throughput {rl['shared_checks_per_s_at_32']}/s at concurrency 32"
        f" ({rl['fallbacks']} answered by the local fallback after a timeout)"
    )
    path = write_results("redis_state", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
