"""Traffic shapes: the target arrival rate over time, shared by the simulator and Locust.

A shape is a small frozen object with ``duration_s`` and ``rate(t)``: jobs per second wanted
``t`` seconds into the run. Every shape is scaled by its peak rate, so the same launch-week
curve drives a 20,000-jobs-a-minute simulated day and a 50-jobs-a-second loopback load test::

    shape = make_shape("launch_week", peak_per_s=20_000 / 60, duration_s=24 * 3600)
    shape.rate(3600.0)            # jobs/s one hour in
    users_at(shape, 3600.0, 0.5)  # Locust users needed if each user submits 0.5 jobs/s
    locust_tick(shape, 3600.0, 0.5)  # (users, spawn rate) for a LoadTestShape.tick(), or None

Shapes:

- ``steady``: the peak rate throughout.
- ``ramp``: linear from ``start_fraction`` of the peak to the peak, then held.
- ``spike``: a base level with one spike to the peak (``at_fraction``, ``width_fraction``).
- ``launch_week``: a ramp to a plateau, launch spikes on top of it, then an exponential decay:
  the launch of a product, compressed into ``duration_s``.

This module imports nothing from Locust (importing Locust monkey-patches the standard library),
so the simulator and pytest may import it freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

__all__ = [
    "LaunchWeek",
    "Ramp",
    "Shape",
    "Spike",
    "Steady",
    "expected_jobs",
    "locust_tick",
    "make_shape",
    "shape_names",
    "users_at",
]


class Shape(Protocol):
    """A target arrival rate over a run of ``duration_s`` seconds."""

    duration_s: float

    def rate(self, t: float) -> float:
        """Jobs per second wanted ``t`` seconds into the run (0 outside the run)."""
        ...


def _check(peak_per_s: float, duration_s: float) -> None:
    if not peak_per_s > 0:
        raise ValueError(f"peak_per_s must be > 0, not {peak_per_s!r}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, not {duration_s!r}")


@dataclass(frozen=True, slots=True)
class Steady:
    """The peak rate from start to end."""

    peak_per_s: float
    duration_s: float

    def __post_init__(self) -> None:
        """Reject a non-positive rate or duration."""
        _check(self.peak_per_s, self.duration_s)

    def rate(self, t: float) -> float:
        """``peak_per_s`` inside the run, else 0."""
        return self.peak_per_s if 0.0 <= t < self.duration_s else 0.0


@dataclass(frozen=True, slots=True)
class Ramp:
    """Linear from ``start_fraction`` × peak to the peak over ``ramp_fraction`` of the run."""

    peak_per_s: float
    duration_s: float
    start_fraction: float = 0.0
    ramp_fraction: float = 1.0

    def __post_init__(self) -> None:
        """Reject out-of-range fractions."""
        _check(self.peak_per_s, self.duration_s)
        if not 0.0 <= self.start_fraction <= 1.0 or not 0.0 < self.ramp_fraction <= 1.0:
            raise ValueError("Ramp needs 0 ≤ start_fraction ≤ 1 and 0 < ramp_fraction ≤ 1")

    def rate(self, t: float) -> float:
        """The ramped rate at ``t``."""
        if not 0.0 <= t < self.duration_s:
            return 0.0
        u = min(1.0, t / (self.ramp_fraction * self.duration_s))
        return self.peak_per_s * (self.start_fraction + (1.0 - self.start_fraction) * u)


@dataclass(frozen=True, slots=True)
class Spike:
    """``base_fraction`` × peak, with one triangular spike to the peak."""

    peak_per_s: float
    duration_s: float
    base_fraction: float = 0.3
    at_fraction: float = 0.5
    width_fraction: float = 0.1

    def __post_init__(self) -> None:
        """Reject out-of-range fractions."""
        _check(self.peak_per_s, self.duration_s)
        if not 0.0 <= self.base_fraction <= 1.0 or not 0.0 < self.width_fraction <= 1.0:
            raise ValueError("Spike needs 0 ≤ base_fraction ≤ 1 and 0 < width_fraction ≤ 1")

    def rate(self, t: float) -> float:
        """The base rate plus the spike's share at ``t``."""
        if not 0.0 <= t < self.duration_s:
            return 0.0
        u = t / self.duration_s
        bump = max(0.0, 1.0 - abs(u - self.at_fraction) / (self.width_fraction / 2))
        return self.peak_per_s * (self.base_fraction + (1.0 - self.base_fraction) * bump)


@dataclass(frozen=True, slots=True)
class LaunchWeek:
    """A launch: ramp, plateau with spikes, decay; every time is a fraction of the run.

    - ``0 … ramp_fraction``: from ``start_fraction`` to ``plateau_fraction`` of the peak
      (smoothstep);
    - ``… decay_at``: the plateau, with ``spikes`` triangular spikes to the full peak, each
      ``spike_width`` wide, spread evenly over the plateau;
    - ``decay_at … 1``: exponential decay toward ``tail_fraction``, with ``decay_half_life``
      (a fraction of the run).
    """

    peak_per_s: float
    duration_s: float
    start_fraction: float = 0.05
    ramp_fraction: float = 0.1
    plateau_fraction: float = 0.6
    spikes: int = 3
    spike_width: float = 0.03
    decay_at: float = 0.7
    decay_half_life: float = 0.08
    tail_fraction: float = 0.15

    def __post_init__(self) -> None:
        """Reject fractions that do not describe a ramp, a plateau and a decay in that order."""
        _check(self.peak_per_s, self.duration_s)
        if not 0.0 < self.ramp_fraction < self.decay_at <= 1.0:
            raise ValueError("LaunchWeek needs 0 < ramp_fraction < decay_at ≤ 1")
        for name in ("start_fraction", "plateau_fraction", "tail_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"LaunchWeek.{name} must be within [0, 1]")
        if self.spikes < 0 or not 0.0 < self.spike_width < 1.0 or not self.decay_half_life > 0:
            raise ValueError("LaunchWeek needs spikes ≥ 0, 0 < spike_width < 1, half-life > 0")

    def rate(self, t: float) -> float:
        """The launch-week rate at ``t``."""
        if not 0.0 <= t < self.duration_s:
            return 0.0
        u = t / self.duration_s
        plateau = self.plateau_fraction
        if u < self.ramp_fraction:
            x = u / self.ramp_fraction
            level = self.start_fraction + (plateau - self.start_fraction) * x * x * (3 - 2 * x)
        elif u < self.decay_at:
            level = plateau
            span = self.decay_at - self.ramp_fraction
            half = self.spike_width / 2
            for i in range(self.spikes):
                centre = self.ramp_fraction + span * (i + 1) / (self.spikes + 1)
                bump = 1.0 - abs(u - centre) / half
                if bump > 0.0:
                    level = max(level, plateau + (1.0 - plateau) * bump)
        else:
            age = (u - self.decay_at) / self.decay_half_life
            tail = self.tail_fraction
            level = tail + (plateau - tail) * math.pow(2.0, -age)
        return self.peak_per_s * level


_SHAPES: Mapping[str, Callable[..., Shape]] = MappingProxyType(
    {"steady": Steady, "ramp": Ramp, "spike": Spike, "launch_week": LaunchWeek}
)


def shape_names() -> list[str]:
    """The names :func:`make_shape` knows."""
    return sorted(_SHAPES)


def make_shape(name: str, peak_per_s: float, duration_s: float, **params: float) -> Shape:
    """The shape called ``name`` (``launch-week`` and ``launch_week`` alike), scaled.

    Raises ValueError for an unknown name or a parameter the shape does not take.
    """
    factory = _SHAPES.get(name.replace("-", "_"))
    if factory is None:
        raise ValueError(f"unknown traffic shape {name!r} (known: {', '.join(shape_names())})")
    try:
        return factory(peak_per_s=peak_per_s, duration_s=duration_s, **params)
    except TypeError as exc:
        raise ValueError(f"shape {name!r}: {exc}") from None


def expected_jobs(shape: Shape, step_s: float | None = None) -> float:
    """The number of arrivals the shape asks for over the whole run (midpoint integration)."""
    step = step_s if step_s is not None else max(1e-3, shape.duration_s / 10_000)
    steps = max(1, math.ceil(shape.duration_s / step))
    width = shape.duration_s / steps
    return sum(shape.rate((i + 0.5) * width) for i in range(steps)) * width


def users_at(shape: Shape, t: float, jobs_per_user_s: float) -> int:
    """Locust users that produce the shape's rate at ``t`` if each submits
    ``jobs_per_user_s`` jobs a second (a closed loop: users = rate / per-user rate)."""
    if not jobs_per_user_s > 0:
        raise ValueError("jobs_per_user_s must be > 0")
    return math.ceil(shape.rate(t) / jobs_per_user_s)


def locust_tick(
    shape: Shape, run_time_s: float, jobs_per_user_s: float, spawn_window_s: float = 1.0
) -> tuple[int, float] | None:
    """What a Locust ``LoadTestShape.tick()`` returns: ``(users, spawn_rate)``, or None once
    the run is over. The spawn rate reaches the next second's user count in ``spawn_window_s``.
    """
    if run_time_s >= shape.duration_s:
        return None
    users = users_at(shape, run_time_s, jobs_per_user_s)
    upcoming = users_at(shape, min(run_time_s + 1.0, shape.duration_s - 1e-9), jobs_per_user_s)
    spawn_rate = max(1.0, abs(upcoming - users) / spawn_window_s, users / 10.0)
    return users, spawn_rate
