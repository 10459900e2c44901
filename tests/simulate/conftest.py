"""Helpers for the simulator tests: scenario and policy files written on the fly."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

#: A small, fast world: fal first (rate-limited), WaveSpeed behind it; millisecond latencies.
SMALL = """
    seed = 5

    [simulation]
    description = "small"
    hours = {hours}
    seed = 1
    shape = "steady"
    peak_per_min = {rate}
    models = {{ "flux-dev" = 1.0 }}

    [simulation.config.router]
    deadline_s = 10

    [simulation.config.router.breaker]
    consecutive_failures = 3
    minimum_calls = 5
    open_base_s = 0.5
    open_max_s = 1.0
    half_open_probes = 1

    [providers.fal]
    latency_ms = {{ dist = "lognormal", p50 = 10, p95 = 30, max = 100 }}
    generation_ms = {{ dist = "lognormal", p50 = 100, p95 = 250, max = 500 }}
    {fal}

    [providers.wavespeed]
    latency_ms = {{ dist = "lognormal", p50 = 10, p95 = 30, max = 100 }}
    generation_ms = {{ dist = "lognormal", p50 = 100, p95 = 250, max = 500 }}
"""

WriteFile = Callable[..., Path]


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteFile:
    """Write dedented TOML text to ``tmp_path/name`` and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def small_scenario(write_toml: WriteFile) -> Callable[..., Path]:
    """A small scenario file; ``fal`` adds lines to fal's profile (phases go after it)."""

    def make(*, hours: float = 0.01, rate: float = 1200, fal: str = "", extra: str = "") -> Path:
        text = textwrap.dedent(SMALL).format(hours=hours, rate=rate, fal=fal)
        return write_toml("small.toml", text + textwrap.dedent(extra))

    return make
