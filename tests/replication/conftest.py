"""Fixtures for the shared-state tests: the real Redis (skipped when absent, a failure under
``CI=true``), a private key prefix per test, and a cuttable TCP proxy in front of Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.replication.proxy import TcpProxy

#: The Redis the tests use; only loopback by default.
REDIS_URL = os.environ.get("IMAGEROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str) -> str | None:
    """None if Redis at ``url`` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; skips the test when Redis is down, unless CI=true (then it fails)."""
    problem = _reachable(REDIS_URL)
    if problem is not None:
        message = f"Redis is not reachable at {REDIS_URL} ({problem})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires it", pytrace=False)
        pytest.skip(f"{message}; start redis-server or set IMAGEROUTER_TEST_REDIS_URL")
    return REDIS_URL


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards (when the
    test Redis is up: the tests of a Redis that is not there need a prefix too)."""
    name = f"irtest:{uuid.uuid4().hex[:12]}"
    yield name
    if _reachable(REDIS_URL) is not None:
        return
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A loopback TCP proxy to the test Redis that a test can cut and restore."""
    target = redis.connection.parse_url(redis_url)
    async with TcpProxy(target.get("host", "127.0.0.1"), int(target.get("port", 6379))) as tcp:
        yield tcp
