"""The API's per-key rate limits shared through Redis, and their local fallback."""

from __future__ import annotations

import asyncio

import pytest

from imagerouter.replication import RedisRateLimiter
from imagerouter.server.ratelimit import LimitPolicy, RateLimiter
from tests.helpers.net import free_port
from tests.replication.proxy import TcpProxy

#: Five requests at once, then (practically) no refill during a test.
TIGHT = {"generate": LimitPolicy(rate_per_s=0.01, burst=5)}


async def test_two_replicas_share_one_bucket_per_key_exactly(redis_url: str, prefix: str) -> None:
    """Two limiters share one bucket per key: 40 concurrent checks admit exactly the burst."""
    # A roomy timeout: this is about sharing, and a loaded machine must not turn a slow Redis
    # answer into a local fallback (the fallback has its own tests below).
    async with (
        RedisRateLimiter(redis_url, TIGHT, prefix=prefix, op_timeout_s=5.0) as one,
        RedisRateLimiter(redis_url, TIGHT, prefix=prefix, op_timeout_s=5.0) as two,
    ):
        decisions = await asyncio.gather(
            *(limiter.check("key-1", "generate") for limiter in (one, two) for _ in range(20))
        )
        other = await two.check("key-2", "generate")
        assert one.fallbacks == two.fallbacks == 0
    assert sum(d.allowed for d in decisions) == 5
    refused = [d for d in decisions if not d.allowed]
    assert all(d.remaining == 0 for d in refused)
    assert all(int(d.headers()["Retry-After"]) >= 1 for d in refused)
    assert other.allowed
    assert other.remaining == 4


async def test_decisions_and_headers_match_the_local_limiter(redis_url: str, prefix: str) -> None:
    """Decisions and headers equal the in-process RateLimiter's for the same checks."""
    local = RateLimiter(TIGHT)
    async with RedisRateLimiter(redis_url, TIGHT, prefix=prefix) as shared:
        for _ in range(7):
            theirs = local.check("k", "generate")
            ours = await shared.check("k", "generate")
            assert ours == theirs
            assert ours.headers() == theirs.headers()


async def test_unknown_policy_is_a_key_error_like_the_local_limiter(
    redis_url: str, prefix: str
) -> None:
    """An unknown policy raises KeyError, like the in-process RateLimiter."""
    async with RedisRateLimiter(redis_url, TIGHT, prefix=prefix) as shared:
        with pytest.raises(KeyError):
            await shared.check("k", "nope")
        assert shared.healthy


async def test_falls_back_to_local_limits_while_redis_is_cut_and_returns_after(
    redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """With Redis cut the local limiter answers; once it is back, the shared bucket does."""
    async with RedisRateLimiter(
        proxy.url(), TIGHT, prefix=prefix, retry_initial_s=0.05, retry_max_s=0.1
    ) as limiter:
        shared = [await limiter.check("k", "generate") for _ in range(3)]
        assert [d.remaining for d in shared] == [4, 3, 2]

        proxy.cut()
        local = [await limiter.check("k", "generate") for _ in range(3)]
        assert not limiter.healthy
        assert limiter.fallbacks == 3
        assert [d.remaining for d in local] == [4, 3, 2]  # the local bucket, full at first
        assert limiter.status()["last_error"]

        proxy.restore()
        for _ in range(100):  # bounded: the backoff is at most 0.1 s
            decision = await limiter.check("k", "generate")
            if limiter.healthy:
                break
            await asyncio.sleep(0.02)
        assert limiter.healthy
        assert decision.remaining == 1  # the shared bucket, three of its five taken before


async def test_a_hanging_redis_costs_one_timeout_then_local_answers(
    redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """A hanging Redis costs one timeout; during the backoff the local limiter answers."""
    async with RedisRateLimiter(
        proxy.url(), TIGHT, prefix=prefix, op_timeout_s=0.05, retry_initial_s=5.0
    ) as limiter:
        assert (await limiter.check("k", "generate")).allowed
        proxy.stall()
        first = await limiter.check("k", "generate")
        assert first.allowed
        assert not limiter.healthy
        assert "Timeout" in (limiter.last_error or "")
        more = [await limiter.check("k", "generate") for _ in range(5)]
        assert [d.allowed for d in more] == [True, True, True, True, False]
        assert limiter.fallbacks == 6
        proxy.restore()


async def test_a_limiter_without_redis_answers_locally_from_the_start(prefix: str) -> None:
    """With no Redis at all the limiter enforces the policy locally and says why."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisRateLimiter(url, TIGHT, prefix=prefix, op_timeout_s=0.2)
    async with limiter:
        assert not limiter.healthy
        decisions = [await limiter.check("k", "generate") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert limiter.status()["healthy"] is False
    assert limiter.fallbacks == 6
