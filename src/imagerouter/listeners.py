"""Fan-out of events (breaker transitions, job events) to any number of listeners."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Listeners"]

log = logging.getLogger(__name__)
EventT = TypeVar("EventT")


class Listeners(Generic[EventT]):
    """Callbacks called in the order they were added; a listener that raises is logged and
    skipped, so a broken metrics hook never breaks routing."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[EventT], None]] = []

    def add(self, listener: Callable[[EventT], None]) -> None:
        """Call ``listener`` for every later event."""
        self._listeners.append(listener)

    def remove(self, listener: Callable[[EventT], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def __bool__(self) -> bool:
        """False while nobody listens, so a caller can skip building an event for no one."""
        return bool(self._listeners)

    def __call__(self, event: EventT) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)
