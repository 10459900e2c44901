"""Talking to Redis without ever depending on it: clients with no hidden retries, the errors
that mean "Redis is not there", and the reconnect backoff."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

__all__ = [
    "REDIS_ERRORS",
    "REFUSED_CREDENTIALS",
    "Backoff",
    "aclose_quietly",
    "guarded",
    "make_client",
    "replica_name",
]

T = TypeVar("T")

#: What a Redis call raises when Redis is down, slow, or went away mid-call.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
#: Redis answered, and refused who we said we are (or what that user may do).
REFUSED_CREDENTIALS: tuple[type[BaseException], ...] = (AuthenticationError, NoPermissionError)


def make_client(url: str, *, timeout_s: float, name: str | None = None) -> Redis:
    """A client for ``url`` that fails fast: a connect timeout of ``timeout_s`` and no retries
    of its own (callers guard every call with their own timeout and fall back)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        # A backstop: should a cancellation be lost (see guarded()), a read still ends.
        socket_timeout=max(1.0, 4 * timeout_s),
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=name,
    )


async def guarded(awaitable: Awaitable[T], timeout_s: float) -> T:
    """Await a Redis call for at most ``timeout_s``, honouring a cancellation it swallowed.

    redis-py can let a command finish normally although its task was cancelled meanwhile
    (redis-py #2028, #2551; still seen with 8.1 on Python 3.11): the task's ``cancelling()``
    count then says so, and this raises the CancelledError the caller was owed.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    async with asyncio.timeout(timeout_s):
        result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


async def aclose_quietly(thing: Any, timeout_s: float = 1.0) -> None:
    """Close a client or pub/sub object, ignoring what a dead connection says about it."""
    if thing is None:
        return
    close = getattr(thing, "aclose", None) or getattr(thing, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await close()


def replica_name() -> str:
    """A replica id unique across hosts and restarts: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Backoff:
    """Exponential backoff from ``initial_s`` to ``max_s``; each delay is jittered down ≤ 50 %."""

    __slots__ = ("_current", "_initial", "_max", "_rng")

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._initial = initial_s
        self._max = max_s
        self._current = initial_s
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The next delay: uniform in [current/2, current], then doubles (capped)."""
        delay = self._current * (0.5 + 0.5 * self._rng.random())
        self._current = min(self._max, self._current * 2.0)
        return delay

    def reset(self) -> None:
        """Back to ``initial_s`` (after a success)."""
        self._current = self._initial
