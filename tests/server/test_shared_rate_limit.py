"""With ``[server] state = "redis://…"``, the per-API-key rate limit is one bucket for the fleet."""

from __future__ import annotations

import uuid

import pytest
import redis

from imagerouter.replication import RedisRateLimiter
from imagerouter.server.keys import limiter_key
from tests.helpers.redis_service import REDIS_URL, require_redis


@pytest.fixture
def redis_url() -> str:
    """The test Redis; skipped when it is down, unless CI=true (then a failure)."""
    return require_redis(REDIS_URL)


async def test_two_servers_share_one_bucket_per_key(make_api, redis_url: str) -> None:
    """Two servers on one Redis prefix admit a key's burst once between them, not once each."""
    prefix = f"irtest-{uuid.uuid4().hex[:8]}"
    limits = {
        "generate": {"rate_per_s": 0.01, "burst": 3},
        "read": {"rate_per_s": 100, "burst": 100},
    }
    first = await make_api(state=redis_url, state_prefix=prefix, rate_limits=limits)
    second = await make_api(state=redis_url, state_prefix=prefix, rate_limits=limits)
    assert isinstance(first.app[limiter_key], RedisRateLimiter)
    token = await first.key()
    body = {"model": "gpt-image-2", "prompt": "a shared bucket"}
    statuses = []
    for api in (first, second, first, second):
        answer = await api.client.post("/v1/jobs", json=body, headers=api.auth(token))
        statuses.append(answer.status)
    assert statuses == [202, 202, 202, 429]
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
