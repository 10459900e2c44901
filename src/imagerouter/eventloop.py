"""The event loop a long-running process serves on: uvloop when it is installed (the
``server`` and ``farm`` extras bring it), else asyncio's own.

uvloop runs the loop, the sockets and the transports in C. Every request the server or the mock
farm answers spends part of its CPU there, so the choice is one place for both (and for the
benchmarks' helper servers, which must not be slower than what they measure).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, TypeVar

__all__ = ["helper_thread", "new_event_loop", "run"]

T = TypeVar("T")


def _uvloop() -> ModuleType | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (uvloop when installed); its result."""
    uvloop = _uvloop()
    return asyncio.run(main) if uvloop is None else uvloop.run(main)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop (uvloop's when installed), for an API that takes one (``web.run_app``)."""
    uvloop = _uvloop()
    return asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()


def helper_thread() -> None:
    """Called first on a thread that works for the event loop (the SQLite writer, the file
    writers): on Linux it becomes ``SCHED_BATCH``, so that waking it does not preempt the loop.

    The loop wakes such a thread with work and goes on holding the GIL. A woken thread of the
    normal policy on the same core preempts it at once, only to find the GIL held and sleep
    again: two context switches for nothing, at every hand-over. A batch thread waits for the
    loop to block (in its poll, or on the GIL the helper then holds) or for the scheduler's
    tick, and keeps its fair share of the CPU. Elsewhere this does nothing.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))
