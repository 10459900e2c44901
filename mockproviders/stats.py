"""What the farm saw, per provider and per API key, as served at ``GET /_farm/stats``.

For each provider, and for each key under it:

- ``requests``: every request (generation requests and polls);
- ``generations``: the generation requests among them;
- ``by_status``: answers by HTTP status (``"200"``, ``"429"``…), plus ``"timeout"`` and
  ``"reset"`` for requests that the farm never answered on purpose;
- ``retry_after_issued``: 429s that carried a Retry-After;
- ``inside_retry_after_raw``: generation requests from a key that arrived while a Retry-After
  window the farm had issued to that key (for that provider) was still running. The window is
  exactly what the client was told (see :mod:`mockproviders.retry_after`);
- ``inside_retry_after``: the same, minus requests arriving in the first ``grace_ms`` after
  that 429 left: those were already in flight and could not know. A well-behaved router keeps
  this at zero.

Polls never count as inside a window. Requests without an API key count for the provider only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagerouter.clock import Clock

__all__ = ["FarmStats"]


@dataclass(slots=True)
class _Counters:
    """The counters kept for a provider and for each of its keys."""

    requests: int = 0
    generations: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    inside_retry_after: int = 0
    inside_retry_after_raw: int = 0
    retry_after_issued: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON."""
        return {
            "requests": self.requests,
            "generations": self.generations,
            "by_status": dict(sorted(self.by_status.items())),
            "inside_retry_after": self.inside_retry_after,
            "inside_retry_after_raw": self.inside_retry_after_raw,
            "retry_after_issued": self.retry_after_issued,
        }


@dataclass(frozen=True, slots=True)
class _Window:
    """A Retry-After promise: from ``issued`` (graced until ``counted_from``) to ``until``."""

    issued: float
    counted_from: float
    until: float


class _ProviderStats:
    __slots__ = ("keys", "total", "windows")

    def __init__(self) -> None:
        self.total = _Counters()
        self.keys: dict[str, _Counters] = {}
        self.windows: dict[str, list[_Window]] = {}

    def counters(self, key: str | None) -> tuple[_Counters, ...]:
        """The provider's counters, and the key's (created on first use) when there is one."""
        if key is None:
            return (self.total,)
        per_key = self.keys.get(key)
        if per_key is None:
            per_key = self.keys[key] = _Counters()
        return (self.total, per_key)


class FarmStats:
    """Counters per provider and key, and the Retry-After windows issued to each key."""

    def __init__(self, providers: Iterable[str], clock: Clock) -> None:
        self._clock = clock
        self._names = list(providers)
        self._providers = {name: _ProviderStats() for name in self._names}

    def arrived(self, provider: str, key: str | None, *, generation: bool) -> None:
        """Count a request as it arrives, checking generation requests against open windows."""
        stats = self._providers[provider]
        counters = stats.counters(key)
        for counter in counters:
            counter.requests += 1
        if not generation:
            return
        for counter in counters:
            counter.generations += 1
        if key is None or key not in stats.windows:
            return
        now = self._clock.now()
        windows = [w for w in stats.windows[key] if w.until > now]
        if not windows:
            del stats.windows[key]
            return
        stats.windows[key] = windows
        if any(w.issued <= now for w in windows):
            for counter in counters:
                counter.inside_retry_after_raw += 1
        if any(w.counted_from <= now for w in windows):
            for counter in counters:
                counter.inside_retry_after += 1

    def answered(self, provider: str, key: str | None, outcome: int | str) -> None:
        """Count an answer: its HTTP status, or ``"timeout"``/``"reset"``."""
        for counter in self._providers[provider].counters(key):
            counter.by_status[str(outcome)] += 1

    def add(
        self,
        provider: str,
        key: str | None,
        *,
        requests: int = 0,
        generations: int = 0,
        statuses: Mapping[str, int] | None = None,
    ) -> None:
        """Add counts kept elsewhere, in bulk: ``requests``, ``generations`` and answers by
        status. For a caller (the simulator) that counts millions of requests locally and
        issues its Retry-After windows elsewhere: these are not checked against windows."""
        for counter in self._providers[provider].counters(key):
            counter.requests += requests
            counter.generations += generations
            if statuses:
                counter.by_status.update(statuses)

    def issued_retry_after(
        self, provider: str, key: str | None, window_s: float, grace_s: float
    ) -> None:
        """Record that a 429 told ``key`` to wait ``window_s`` seconds, starting now."""
        stats = self._providers[provider]
        for counter in stats.counters(key):
            counter.retry_after_issued += 1
        if key is None or window_s <= 0:
            return
        now = self._clock.now()
        window = _Window(issued=now, counted_from=now + grace_s, until=now + window_s)
        live = [w for w in stats.windows.get(key, ()) if w.until > now]
        live.append(window)
        stats.windows[key] = live

    def snapshot(self) -> dict[str, Any]:
        """``{"providers": {name: {...counters, "keys": {key: {...counters}}}}}``."""
        providers = {}
        for name in self._names:
            stats = self._providers[name]
            entry = stats.total.as_dict()
            entry["keys"] = {key: counters.as_dict() for key, counters in stats.keys.items()}
            providers[name] = entry
        return {"providers": providers}

    def reset(self) -> None:
        """Zero every counter and forget every window."""
        self._providers = {name: _ProviderStats() for name in self._names}
