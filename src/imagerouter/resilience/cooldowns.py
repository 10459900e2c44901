"""Not-before times per provider key: from a ``Retry-After`` or, for a 429 without one,
learned (short at first, doubling while the 429s continue, forgotten after quiet time). Pure and
O(1); time comes only from the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagerouter.clock import Clock
from imagerouter.listeners import Listeners
from imagerouter.resilience.ranges import refuse_out_of_range

__all__ = ["CooldownConfig", "CooldownStarted", "Cooldowns"]


@dataclass(frozen=True, slots=True)
class CooldownConfig:
    """How a cooldown is learned for a 429 that carries no Retry-After.

    Attributes:
        learned_initial_s: the first such cooldown of an episode.
        learned_multiplier: growth per further 429 of the same episode.
        learned_max_s: cap on a learned cooldown.
        learned_reset_s: quiet time, after a learned cooldown ends, that ends the episode
            (the next one starts again at ``learned_initial_s``).
    """

    learned_initial_s: float = 1.0
    learned_multiplier: float = 2.0
    learned_max_s: float = 30.0
    learned_reset_s: float = 60.0

    def __post_init__(self) -> None:
        """Reject values that would make the cooldowns meaningless, naming the field."""
        checks: tuple[tuple[str, bool], ...] = (
            ("learned_initial_s", self.learned_initial_s > 0.0),
            ("learned_multiplier", self.learned_multiplier >= 1.0),
            ("learned_max_s", self.learned_max_s >= self.learned_initial_s),
            ("learned_reset_s", self.learned_reset_s >= 0.0),
        )
        refuse_out_of_range(self, checks)


@dataclass(frozen=True, slots=True)
class CooldownStarted:
    """A cooldown this process started or lengthened (``Cooldowns.on_start`` listeners get it).

    Attributes:
        key: the cooled-down key (a provider instance name, for the router).
        until: monotonic end of the cooldown.
        reason: ``"retry-after"``, ``"429 without Retry-After"``, …
    """

    key: str
    until: float
    reason: str


class Cooldowns:
    """Not-before times keyed by a string (e.g. ``"openai/key-2"``), with their reasons.

    A cooldown never gets shorter: starting one on a key that already has a later end keeps the
    later end. Expired entries are dropped when looked at and swept whenever the table has
    doubled since the last sweep, so the table stays proportional to the live keys.

    ``on_start`` listeners hear of every cooldown :meth:`start` or :meth:`start_learned` began or
    lengthened (e.g. to share it with other replicas); :meth:`apply` adopts a cooldown decided
    elsewhere without telling them.
    """

    __slots__ = ("_clock", "_config", "_entries", "_learned", "_sweep_at", "on_start")

    _MIN_SWEEP = 64

    def __init__(self, clock: Clock, config: CooldownConfig | None = None) -> None:
        self._clock = clock
        self._config = config if config is not None else CooldownConfig()
        self._entries: dict[str, tuple[float, str]] = {}
        self._learned: dict[str, tuple[float, float]] = {}
        self._sweep_at = self._MIN_SWEEP
        #: Told of every cooldown started or lengthened here (``.add(fn)``).
        self.on_start: Listeners[CooldownStarted] = Listeners()

    def start(self, key: str, seconds: float, reason: str = "retry-after") -> float:
        """Cool ``key`` down for ``seconds`` (a Retry-After); returns the monotonic end."""
        now = self._clock.now()
        end = now + (seconds if seconds > 0.0 else 0.0)
        current = self._entries.get(key)
        if current is not None and current[0] >= end:
            return current[0]
        self._entries[key] = (end, reason)
        self._maybe_sweep(now)
        self.on_start(CooldownStarted(key, end, reason))
        return end

    def apply(self, key: str, until: float, reason: str = "remote") -> bool:
        """Adopt a cooldown decided elsewhere (monotonic ``until``), keeping the later end.

        ``on_start`` listeners are not told (so a shared cooldown is never echoed back).
        Returns True if the cooldown of ``key`` was started or lengthened.
        """
        now = self._clock.now()
        if until <= now:
            return False
        current = self._entries.get(key)
        if current is not None and current[0] >= until:
            return False
        self._entries[key] = (until, reason)
        self._maybe_sweep(now)
        return True

    def start_learned(self, key: str) -> float:
        """Cool ``key`` down after a 429 without Retry-After; returns the seconds to wait.

        The first of an episode waits ``learned_initial_s``; each further one waits
        ``learned_multiplier`` times the previous, up to ``learned_max_s``. A 429 that arrives
        while ``key`` is still cooling down was sent before the cooldown began, so it neither
        grows nor extends it (the remaining time is returned). ``learned_reset_s`` of quiet
        after a learned cooldown ends the episode.
        """
        now = self._clock.now()
        current = self._entries.get(key)
        if current is not None and current[0] > now:
            return current[0] - now
        cfg = self._config
        previous = self._learned.get(key)
        if previous is None or now - previous[1] >= cfg.learned_reset_s:
            length = cfg.learned_initial_s
        else:
            length = min(cfg.learned_max_s, previous[0] * cfg.learned_multiplier)
        end = now + length
        self._learned[key] = (length, end)
        self._entries[key] = (end, "429 without Retry-After")
        self._maybe_sweep(now)
        self.on_start(CooldownStarted(key, end, "429 without Retry-After"))
        return length

    def until(self, key: str) -> float | None:
        """Monotonic end of ``key``'s cooldown, or None if it has none running."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] > self._clock.now():
            return entry[0]
        del self._entries[key]
        return None

    def remaining(self, key: str) -> float:
        """Seconds left on ``key``'s cooldown (0.0 if none)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        left = entry[0] - self._clock.now()
        if left > 0.0:
            return left
        del self._entries[key]
        return 0.0

    def active(self, key: str) -> bool:
        """Is ``key`` cooling down right now?"""
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry[0] > self._clock.now():
            return True
        del self._entries[key]
        return False

    def reason(self, key: str) -> str | None:
        """Why ``key`` is cooling down, or None if it is not."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock.now():
            return None
        return entry[1]

    def clear(self, key: str) -> None:
        """End ``key``'s cooldown now and forget its learned length (an operator's override)."""
        self._entries.pop(key, None)
        self._learned.pop(key, None)

    def snapshot(self) -> dict[str, Any]:
        """The live state as a plain dict.

        ``{"active": {key: {"until": monotonic end, "remaining_s", "reason"}},
        "learned": {key: {"length_s": last learned length, "ends_at": its monotonic end}}}``;
        only live entries (active cooldowns, episodes not yet over) appear.
        """
        now = self._clock.now()
        self.sweep()
        return {
            "active": {
                key: {"until": end, "remaining_s": end - now, "reason": reason}
                for key, (end, reason) in self._entries.items()
            },
            "learned": {
                key: {"length_s": length, "ends_at": end}
                for key, (length, end) in self._learned.items()
            },
        }

    def sweep(self) -> int:
        """Drop every expired cooldown and every finished episode; returns how many went."""
        now = self._clock.now()
        before = len(self._entries) + len(self._learned)
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        reset_s = self._config.learned_reset_s
        self._learned = {k: e for k, e in self._learned.items() if now - e[1] < reset_s}
        after = len(self._entries) + len(self._learned)
        self._sweep_at = max(self._MIN_SWEEP, 2 * after)
        return before - after

    def __len__(self) -> int:
        """Entries held (active cooldowns plus live episodes, and not-yet-swept expired ones)."""
        return len(self._entries) + len(self._learned)

    def _maybe_sweep(self, now: float) -> None:
        """Sweep when the table has doubled since the last sweep: O(1) amortized."""
        if len(self._entries) + len(self._learned) >= self._sweep_at:
            self.sweep()
