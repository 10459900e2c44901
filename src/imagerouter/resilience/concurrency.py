"""How many calls may be in flight to one provider instance: :class:`ConcurrencyLimit` and its
implementations :class:`FixedLimit` (a bulkhead) and :class:`AIMDLimit` (additive increase,
multiplicative decrease on drops and slow calls), in the style of Netflix concurrency-limits.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AIMDLimit", "ConcurrencyLimit", "FixedLimit"]


class ConcurrencyLimit(Protocol):
    """How many calls may be in flight to one provider at once.

    ``try_acquire()`` before a call; exactly one ``release()`` after every True, with the call's
    latency and whether it was *dropped* (timeout, 429, 5xx): the signal of overload.
    """

    @property
    def limit(self) -> int:
        """The current limit."""
        ...

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        ...

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        ...

    def release(self, latency_s: float, dropped: bool = False) -> None:
        """Give a slot back, teaching the limit from the call's latency and outcome."""
        ...


class _Slots:
    """What every limit shares: ``limit`` slots, ``in_flight`` of them taken."""

    __slots__ = ("_in_flight", "_limit")

    _limit: int
    _in_flight: int

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Calls acquired and not yet released."""
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if fewer than ``limit`` calls are in flight."""
        if self._in_flight < self._limit:
            self._in_flight += 1
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        """``{"limit", "in_flight"}``."""
        return {"limit": self._limit, "in_flight": self._in_flight}


class FixedLimit(_Slots):
    """A fixed concurrency limit (a bulkhead): releases teach it nothing."""

    __slots__ = ()

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError(f"FixedLimit.max_concurrent must be ≥ 1, not {max_concurrent!r}")
        self._limit = max_concurrent
        self._in_flight = 0

    def release(self, latency_s: float = 0.0, dropped: bool = False) -> None:
        """Give a slot back."""
        if self._in_flight <= 0:
            raise RuntimeError("FixedLimit.release() without a matching try_acquire()")
        self._in_flight -= 1


class AIMDLimit(_Slots):
    """Additive increase, multiplicative decrease (Netflix concurrency-limits ``AIMDLimit``).

    A dropped call, or one slower than ``timeout_s``, multiplies the limit by ``backoff_ratio``;
    a good call adds 1 when the limit is actually being used (in flight, counting the call just
    released, ≥ limit / 2), so an idle provider does not earn a limit it never tested. The
    limit stays within [``minimum``, ``maximum``]. ``timeout_s`` defaults to 120 s, not the
    library's 5 s: image generation routinely takes tens of seconds.
    """

    __slots__ = ("_backoff", "_maximum", "_minimum", "_timeout_s")

    def __init__(
        self,
        initial: int = 20,
        minimum: int = 1,
        maximum: int = 200,
        backoff_ratio: float = 0.9,
        timeout_s: float = 120.0,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("AIMDLimit needs 1 ≤ minimum ≤ initial ≤ maximum")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"AIMDLimit.backoff_ratio must be in (0, 1), not {backoff_ratio!r}")
        self._limit = initial
        self._minimum = minimum
        self._maximum = maximum
        self._backoff = backoff_ratio
        self._timeout_s = timeout_s
        self._in_flight = 0

    def release(self, latency_s: float, dropped: bool = False) -> None:
        """Give a slot back; decrease on a drop or a timeout, increase on a busy success."""
        in_flight = self._in_flight
        if in_flight <= 0:
            raise RuntimeError("AIMDLimit.release() without a matching try_acquire()")
        self._in_flight = in_flight - 1
        if dropped or latency_s > self._timeout_s:
            limit = int(self._limit * self._backoff)
            self._limit = limit if limit > self._minimum else self._minimum
        elif in_flight * 2 >= self._limit and self._limit < self._maximum:
            self._limit += 1
