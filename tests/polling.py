"""Waiting for something in a test, bounded by a count of polls: a hang guard that fails the
test with a message, never a check of how fast anything was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

INTERVAL_S = 0.05
#: For in-process state that changes within milliseconds (a breaker replicated through Redis,
#: say), so that the wait does not eat into a short window the test then uses.
FINE_INTERVAL_S = 0.005


async def eventually(
    condition: Callable[[], Any],
    *,
    timeout_s: float = 20.0,
    what: str = "the condition",
    interval_s: float = INTERVAL_S,
) -> Any:
    """Poll ``condition()`` (sync, or returning an awaitable) every ``interval_s`` until it is
    truthy; return its value. After about ``timeout_s`` of polls, fail the test naming ``what``."""
    value: Any = None
    for _ in range(max(1, int(timeout_s / interval_s))):
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval_s)
    pytest.fail(f"gave up after {timeout_s} s waiting for {what} (last: {value!r})")


async def eventually_fine(
    condition: Callable[[], Any], *, timeout_s: float = 5.0, what: str = "the condition"
) -> Any:
    """:func:`eventually`, polling every :data:`FINE_INTERVAL_S`."""
    return await eventually(condition, timeout_s=timeout_s, what=what, interval_s=FINE_INTERVAL_S)


def eventually_sync(
    condition: Callable[[], Any], *, timeout_s: float = 20.0, what: str = "the condition"
) -> Any:
    """:func:`eventually` for code outside an event loop (a subprocess's server, say)."""
    value: Any = None
    for _ in range(max(1, int(timeout_s / INTERVAL_S))):
        value = condition()
        if value:
            return value
        time.sleep(INTERVAL_S)
    pytest.fail(f"gave up after {timeout_s} s waiting for {what} (last: {value!r})")
