"""Requests inside Retry-After windows: the farm's counter, in O(log n) per request.

The definition is the farm's (:class:`mockproviders.stats.FarmStats`): a generation request from
a key counts in ``inside_retry_after_raw`` when a Retry-After window issued to that key is still
running, and in ``inside_retry_after`` when such a window is also past its grace (the first
``grace_s`` after its 429, when requests already in flight could not know). The farm keeps the
live windows in a list and scans it on every request, which is fine for a farm and quadratic for
a simulator that sends thousands of requests into a 429 storm at one virtual instant; here each
key keeps the latest end of any window, the latest end of the windows past their grace, and a
heap of those still in it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["RetryAfterCounter"]


@dataclass(slots=True)
class _Key:
    """One key's windows: the latest end of all, of those past their grace, and the rest."""

    latest_end: float = float("-inf")
    matured_end: float = float("-inf")
    in_grace: list[tuple[float, float]] = field(default_factory=list)
    issued: int = 0
    inside: int = 0
    inside_raw: int = 0


class RetryAfterCounter:
    """Retry-After windows issued per key, and the requests that arrived inside them."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}

    def issued(self, key: str, now: float, window_s: float, grace_s: float) -> None:
        """A 429 told ``key`` to wait ``window_s`` seconds from ``now``."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        state.issued += 1
        if window_s <= 0:
            return
        end = now + window_s
        if end > state.latest_end:
            state.latest_end = end
        heapq.heappush(state.in_grace, (now + grace_s, end))

    def arrived(self, key: str, now: float) -> None:
        """A generation request from ``key`` arrived at ``now``."""
        state = self._keys.get(key)
        if state is None or state.latest_end <= now:
            return
        state.inside_raw += 1
        in_grace = state.in_grace
        while in_grace and in_grace[0][0] <= now:
            _, end = heapq.heappop(in_grace)
            if end > state.matured_end:
                state.matured_end = end
        if state.matured_end > now:
            state.inside += 1

    def counts(self, key: str) -> dict[str, int]:
        """``{"retry_after_issued", "inside_retry_after", "inside_retry_after_raw"}``."""
        state = self._keys.get(key) or _Key()
        return {
            "retry_after_issued": state.issued,
            "inside_retry_after": state.inside,
            "inside_retry_after_raw": state.inside_raw,
        }
