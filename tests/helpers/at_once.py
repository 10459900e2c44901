"""Counting what a test receiver holds at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class AtOnce:
    """How many are held now (``now``) and the most held at once so far (``most``)."""

    now: int = 0
    most: int = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """One more held for the ``with`` block."""
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            yield
        finally:
            self.now -= 1
