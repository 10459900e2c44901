"""The test Redis: its URL, whether it answers, skipping (or failing under ``CI=true``) when it
does not, and removing a test's keys."""

from __future__ import annotations

import os

import pytest
import redis

#: The Redis the tests use; only loopback by default.
REDIS_URL = os.environ.get("IMAGEROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_problem(url: str = REDIS_URL) -> str | None:
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


def require_redis(url: str = REDIS_URL) -> str:
    """``url``, if Redis answers there; else skip the test, or fail it when CI=true."""
    problem = redis_problem(url)
    if problem is not None:
        message = f"Redis is not reachable at {url} ({problem})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires it", pytrace=False)
        pytest.skip(f"{message}; start redis-server or set IMAGEROUTER_TEST_REDIS_URL")
    return url


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` in Redis at ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
