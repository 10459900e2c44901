"""Fixtures for the shared-state tests: the real Redis (skipped when absent, a failure under
``CI=true``), a private key prefix per test, and a cuttable TCP proxy in front of Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.helpers.redis_service import REDIS_URL, delete_prefix, redis_problem, require_redis
from tests.replication.proxy import TcpProxy


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; skips the test when Redis is down, unless CI=true (then it fails)."""
    return require_redis(REDIS_URL)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards (when the
    test Redis is up: the tests of a Redis that is not there need a prefix too)."""
    name = f"irtest:{uuid.uuid4().hex[:12]}"
    yield name
    if redis_problem(REDIS_URL) is None:
        delete_prefix(REDIS_URL, name)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A loopback TCP proxy to the test Redis that a test can cut and restore."""
    target = redis.connection.parse_url(redis_url)
    async with TcpProxy(target.get("host", "127.0.0.1"), int(target.get("port", 6379))) as tcp:
        yield tcp
