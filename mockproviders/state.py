"""Everything a farm knows while it runs: adapters, fault engine, stats, jobs and images
(no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.errors import ConfigError
from mockproviders.adapter import FarmAdapter
from mockproviders.engine import FaultEngine
from mockproviders.jobs import FarmJobs
from mockproviders.pngcache import PngCache
from mockproviders.profile import FaultProfile, validation_problems
from mockproviders.scenario import Scenario
from mockproviders.stats import FarmStats

__all__ = ["FarmState", "parse_profile"]


def parse_profile(data: FaultProfile | Mapping[str, Any]) -> FaultProfile:
    """A fault profile from a model or a mapping; a bad mapping raises ConfigError."""
    if isinstance(data, FaultProfile):
        return data
    try:
        return FaultProfile.model_validate(dict(data))
    except ValidationError as exc:
        first = validation_problems(exc)[0]
        raise ConfigError(first["reason"], field=first["field"] or None) from exc


def _check_adapters(adapters: Sequence[FarmAdapter]) -> None:
    names: set[str] = set()
    prefixes: set[str] = set()
    for adapter in adapters:
        prefix = adapter.prefix
        if not prefix.startswith("/") or prefix.endswith("/") or prefix.startswith("/_farm"):
            raise ValueError(f"adapter {adapter.name!r}: bad prefix {prefix!r}")
        if adapter.name in names or prefix in prefixes:
            raise ValueError(f"adapter {adapter.name!r}: its name or prefix is already taken")
        names.add(adapter.name)
        prefixes.add(prefix)


class FarmState:
    """The live farm: one adapter per provider, and the engine, stats and jobs they share."""

    def __init__(
        self,
        scenario: Scenario,
        adapters: Sequence[FarmAdapter],
        clock: Clock | None = None,
    ) -> None:
        _check_adapters(adapters)
        self.clock: Clock = clock or MonotonicClock()
        self.adapters: dict[str, FarmAdapter] = {adapter.name: adapter for adapter in adapters}
        self.engine = FaultEngine(scenario, self.adapters, self.clock)
        self.stats = FarmStats(self.adapters, self.clock)
        self.jobs = {name: FarmJobs(self.clock) for name in self.adapters}
        #: The generated images, sized by the scenario's ``[images]``.
        self.pngs = PngCache(scenario.images)
        #: How big the generated videos are, the scenario's ``[videos]``.
        self.videos = scenario.videos
        #: Set when the farm shuts down: requests held by a ``timeout`` fault let go.
        self.stopping = asyncio.Event()
        #: The CA bundle path when the farm serves TLS.
        self.ca_bundle: str | None = None

    def adapter(self, name: str) -> FarmAdapter:
        """The adapter serving ``name``; KeyError for an unknown provider."""
        try:
            return self.adapters[name]
        except KeyError:
            raise KeyError(f"unknown provider {name!r}") from None

    def providers(self, farm_url: str) -> dict[str, Any]:
        """The body of ``GET /_farm/providers``."""
        return {
            "url": farm_url,
            "tls": self.ca_bundle is not None,
            "ca_bundle": self.ca_bundle,
            "clock_s": round(self.engine.clock_s(), 3),
            "providers": {
                name: {**adapter.describe(farm_url), **self.engine.describe(name)}
                for name, adapter in self.adapters.items()
            },
        }

    def set_faults(self, name: str, profile: FaultProfile | Mapping[str, Any]) -> None:
        """Replace the live base profile of ``name`` (its phases too, if given)."""
        self.adapter(name)
        self.engine.set_faults(name, parse_profile(profile))

    def stats_snapshot(self) -> dict[str, Any]:
        """The body of ``GET /_farm/stats``."""
        snapshot = self.stats.snapshot()
        snapshot["clock_s"] = round(self.engine.clock_s(), 3)
        return snapshot

    def reset(self) -> None:
        """Zero the counters and restart the scenario clock (buckets and RNGs too)."""
        self.stats.reset()
        self.engine.reset()
