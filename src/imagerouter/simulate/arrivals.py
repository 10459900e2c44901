"""Job arrivals: a non-homogeneous Poisson process following a traffic shape, and the job mix.

Arrivals come from the time-change method: unit-rate exponential gaps are spent against the
shape's cumulative rate, which is taken as constant over each ``step_s`` (evaluated at the
step's midpoint). One exponential draw per arrival, whatever the rate; no thinning.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Generic, TypeVar

from imagerouter.shapes import Shape

__all__ = ["JobMix", "Mix", "poisson_arrivals"]

T = TypeVar("T")


def poisson_arrivals(
    shape: Shape, rng: random.Random, *, start: float = 0.0, step_s: float = 1.0
) -> Iterator[float]:
    """Arrival times (``start`` + seconds into the run), in order, over the shape's duration."""
    if not step_s > 0:
        raise ValueError("step_s must be > 0")
    duration = shape.duration_s
    # rng.expovariate(1.0), written out (it is -log(1 - random()) / 1.0): one call per arrival.
    uniform, log = rng.random, math.log
    need = -log(1.0 - uniform())
    lo = 0.0
    while lo < duration:
        hi = min(duration, lo + step_s)
        rate = shape.rate((lo + hi) / 2)
        pos = lo
        if rate > 0.0:
            while need <= rate * (hi - pos):
                pos += need / rate
                yield start + pos
                need = -log(1.0 - uniform())
            need -= rate * (hi - pos)
        lo = hi


class Mix(Generic[T]):
    """Draws items by weight: ``Mix({"a": 3, "b": 1}).draw(rng)`` is ``"a"`` 3 times in 4."""

    __slots__ = ("_cumulative", "_items", "_total")

    def __init__(self, weights: Mapping[T, float] | Sequence[tuple[T, float]]) -> None:
        pairs = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        pairs = [(item, float(w)) for item, w in pairs if w > 0]
        if not pairs:
            raise ValueError("a mix needs at least one positive weight")
        self._items = [item for item, _ in pairs]
        self._cumulative = list(accumulate(w for _, w in pairs))
        self._total = self._cumulative[-1]

    @property
    def items(self) -> list[T]:
        """The items with a positive weight, in the order given."""
        return list(self._items)

    def share(self, item: T) -> float:
        """The probability of drawing ``item``."""
        i = self._items.index(item)
        previous = self._cumulative[i - 1] if i else 0.0
        return (self._cumulative[i] - previous) / self._total

    def draw_index(self, rng: random.Random) -> int:
        """The index (into :attr:`items`) of one weighted draw."""
        i = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return i if i < len(self._items) else len(self._items) - 1

    def draw(self, rng: random.Random) -> T:
        """One weighted draw."""
        return self._items[self.draw_index(rng)]


class JobMix:
    """The jobs' models and quality tiers, drawn independently by weight, one pair a job."""

    __slots__ = ("_model_mix", "_tier_mix", "models", "tiers")

    def __init__(self, models: Mapping[str, float], tiers: Mapping[str, float]) -> None:
        self._model_mix, self._tier_mix = Mix(models), Mix(tiers)
        self.models: list[str] = self._model_mix.items
        self.tiers: list[str] = self._tier_mix.items

    def draw(self, rng: random.Random) -> tuple[int, int]:
        """One job: (index into :attr:`models`, index into :attr:`tiers`), the model drawn
        first; the same draws as the two mixes' :meth:`Mix.draw_index`, written out here
        because this runs once per simulated job."""
        model, tier = self._model_mix, self._tier_mix
        m = bisect.bisect_right(model._cumulative, rng.random() * model._total)
        t = bisect.bisect_right(tier._cumulative, rng.random() * tier._total)
        last_m, last_t = len(model._items) - 1, len(tier._items) - 1
        return (m if m < last_m else last_m), (t if t < last_t else last_t)
