"""Spend caps per provider instance: US dollars spent in the current hour and day, from the
catalog's ``cost_usd`` of completed calls, against ``max_usd_per_hour`` / ``max_usd_per_day``.

Windows are fixed and aligned on the wall clock (UTC): the hour window is ``[HH:00, HH+1:00)``,
the day window ``[00:00, 24:00)`` UTC. Window ``i`` of length ``L`` covers wall seconds
``[i·L, (i+1)·L)``, so every replica agrees on which window a call falls in without talking,
and a capped instance is back at the start of the next window (when its spend starts again
from 0).

The meter keeps, per window, what it knows of the fleet's total (``apply``: the total the
shared store reported, kept as a ``max``) plus the local spend not yet acknowledged by the
shared store (``record`` adds to it; ``acknowledge`` moves it into the known total). Without a
shared store nothing is ever acknowledged and the meter simply counts this process's spend.
A local amount can briefly be counted twice (when a peer's newer total, which already includes
it, arrives before the store's acknowledgement): the error is always on the side of the cap.

Race semantics: spend is counted when a call *completes*, and the cap is checked when a call
is *admitted*. So calls already in flight when the cap is reached still complete and are
counted: a window can overshoot its cap by at most the calls in flight at that moment (at most
the instance's concurrency × the model's cost per call, fleet-wide: the sum over replicas),
plus the calls admitted on other replicas during the propagation delay of the shared total
(one Redis round trip and one pub/sub message, about a millisecond on a LAN).

Pure and O(windows); time comes only from the injected clock (its ``wall()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagerouter.clock import Clock
from imagerouter.listeners import Listeners

__all__ = ["WINDOWS", "SpendAdded", "SpendCapped", "SpendMeter"]

#: The windows a cap can be set on, and their lengths in seconds.
WINDOWS: dict[str, float] = {"hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True, slots=True)
class SpendAdded:
    """Spend this process recorded (``SpendMeter.on_spend`` listeners get it, per window)."""

    name: str
    window: str
    index: int
    usd: float


@dataclass(frozen=True, slots=True)
class SpendCapped:
    """A window whose cap is reached: what was spent, the cap, and when the window ends."""

    window: str
    spent_usd: float
    cap_usd: float
    frees_in_s: float

    @property
    def reason(self) -> str:
        """The skip reason the router records (its first word is the metric label)."""
        return (
            f"spend_cap: ${self.spent_usd:.4f} of ${self.cap_usd:.4f} per {self.window} spent; "
            f"frees in {self.frees_in_s:.0f}s"
        )


class SpendMeter:
    """One provider instance's spend in each capped window; see the module doc.

    Args:
        name: the provider instance.
        caps: window name (``"hour"``, ``"day"``) → cap in US dollars (> 0).
        clock: read with ``wall()`` to find the current window, ``now()`` for ``ready_at``.
    """

    __slots__ = ("_caps", "_clock", "_known", "_unsent", "name", "on_spend")

    def __init__(self, name: str, caps: Mapping[str, float], clock: Clock) -> None:
        for window, cap in caps.items():
            if window not in WINDOWS:
                raise ValueError(f"unknown spend window {window!r} (known: {', '.join(WINDOWS)})")
            if not cap > 0.0:
                raise ValueError(f"the {window} spend cap must be > 0, not {cap!r}")
        self.name = name
        self._caps = dict(caps)
        self._clock = clock
        # window → (index, usd): the fleet's total as last reported, and local spend not in it.
        self._known: dict[str, tuple[int, float]] = {}
        self._unsent: dict[str, tuple[int, float]] = {}
        #: Told of every amount recorded here, once per capped window (``.add(fn)``).
        self.on_spend: Listeners[SpendAdded] = Listeners()

    @property
    def caps(self) -> dict[str, float]:
        """Window → cap in US dollars."""
        return dict(self._caps)

    def index(self, window: str) -> int:
        """The number of the current ``window`` (wall seconds // its length)."""
        return math.floor(self._clock.wall() / WINDOWS[window])

    def record(self, usd: float) -> None:
        """A call completed that cost ``usd``: add it to every capped window."""
        if usd <= 0.0:
            return
        for window in self._caps:
            index = self.index(window)
            self._unsent[window] = (index, _at(self._unsent, window, index) + usd)
            self.on_spend(SpendAdded(self.name, window, index, usd))

    def apply(self, window: str, index: int, total_usd: float) -> bool:
        """Adopt the fleet's total of a window (from the shared store); keeps the larger.
        A total of a window that is not the current one is ignored. Returns whether it
        changed what this meter knows."""
        if window not in self._caps or index != self.index(window):
            return False
        if total_usd <= _at(self._known, window, index):
            return False
        self._known[window] = (index, total_usd)
        return True

    def acknowledge(self, window: str, index: int, usd: float, total_usd: float) -> None:
        """The shared store added ``usd`` of this meter's spend and now holds ``total_usd``."""
        if window not in self._caps or index != self.index(window):
            return
        self._unsent[window] = (index, max(0.0, _at(self._unsent, window, index) - usd))
        self.apply(window, index, total_usd)

    def spent(self, window: str) -> float:
        """US dollars spent in the current ``window`` (as far as this process knows)."""
        index = self.index(window)
        return _at(self._known, window, index) + _at(self._unsent, window, index)

    def frees_in(self, window: str) -> float:
        """Seconds until the current ``window`` ends."""
        length = WINDOWS[window]
        return (self.index(window) + 1) * length - self._clock.wall()

    def capped(self) -> SpendCapped | None:
        """The first window whose cap is reached (the one that frees last), or None."""
        hit: SpendCapped | None = None
        for window, cap in self._caps.items():
            spent = self.spent(window)
            if spent >= cap:
                frees = self.frees_in(window)
                if hit is None or frees > hit.frees_in_s:
                    hit = SpendCapped(window, spent, cap, frees)
        return hit

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Window → ``{"cap_usd", "spent_usd", "remaining_usd", "resets_in_s", "capped"}``."""
        out: dict[str, dict[str, Any]] = {}
        for window, cap in self._caps.items():
            spent = self.spent(window)
            out[window] = {
                "cap_usd": cap,
                "spent_usd": round(spent, 6),
                "remaining_usd": round(max(0.0, cap - spent), 6),
                "resets_in_s": round(self.frees_in(window), 3),
                "capped": spent >= cap,
            }
        return out


def _at(table: dict[str, tuple[int, float]], window: str, index: int) -> float:
    """The amount ``table`` holds for ``window`` if it is of window ``index``, else 0."""
    entry = table.get(window)
    return entry[1] if entry is not None and entry[0] == index else 0.0
