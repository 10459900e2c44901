"""The clock that every state machine reads, so tests and the simulator can drive time."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "MonotonicClock"]


class Clock(Protocol):
    """Seconds on a monotonic scale, plus the wall clock for records and HTTP dates."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def wall(self) -> float:
        """Unix seconds, for timestamps and for turning an HTTP-date into a delay."""
        ...


class MonotonicClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to: for tests and the virtual-time simulator."""

    __slots__ = ("_now", "_wall_offset")

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError("a clock never goes backward")
        self._now += seconds

    def advance_to(self, t: float) -> None:
        """Move time forward to ``t`` (never backward)."""
        if t < self._now:
            raise ValueError("a clock never goes backward")
        self._now = t
