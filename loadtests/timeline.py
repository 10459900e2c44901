"""The farm timeline: when to switch which provider to which fault profile.

Pure: :func:`plan_switches` turns a scenario's phases and the farm's base profiles into an
ordered list of :class:`Switch` es; the orchestrator sleeps until each one and sends its profile
with ``PUT /_farm/providers/{name}/faults``. A provider's profile at any moment is its base
profile with the fields of every phase in force laid over it, whole fields at a time and in the
order the phases are written (as the farm's own phases overlay).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.scenario import EVERY_PROVIDER, Phase

__all__ = ["Switch", "expand_providers", "plan_switches", "profile_at"]


@dataclass(frozen=True, slots=True)
class Switch:
    """At ``at_s`` on the run clock, give ``provider`` the fault profile ``faults``."""

    at_s: float
    provider: str
    faults: dict[str, Any]
    #: The names of the phases in force for this provider from now on (empty: back to base).
    active: tuple[str, ...]


def expand_providers(phase: Phase, known: Sequence[str]) -> list[str]:
    """The providers a phase names (``*``: all of ``known``); ValueError for an unknown one."""
    names: list[str] = []
    for name in phase.providers:
        if name == EVERY_PROVIDER:
            names.extend(n for n in known if n not in names)
        elif name not in known:
            raise ValueError(
                f"phase {phase.name!r}: the farm serves no provider {name!r} "
                f"(it serves: {', '.join(known)})"
            )
        elif name not in names:
            names.append(name)
    return names


def _end(phase: Phase, duration_s: float) -> float:
    """When the phase stops; one that reaches the run's end holds through the drain."""
    if phase.until_s is None or phase.until_s >= duration_s:
        return math.inf
    return phase.until_s


def profile_at(
    t: float,
    provider: str,
    base: Mapping[str, Any],
    phases: Sequence[Phase],
    known: Sequence[str],
    duration_s: float,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``provider``'s profile at ``t`` and the phases in force: base, then each phase's fields."""
    profile = dict(base)
    active: list[str] = []
    for phase in phases:
        if provider in expand_providers(phase, known) and phase.at_s <= t < _end(phase, duration_s):
            profile.update(phase.faults)
            active.append(phase.name)
    return profile, tuple(active)


def plan_switches(
    phases: Sequence[Phase], base: Mapping[str, Mapping[str, Any]], duration_s: float
) -> list[Switch]:
    """Every switch the run needs, in time order (several at one instant: by provider).

    ``base`` maps each provider the farm serves to its base profile (``GET /_farm/providers``
    → ``providers.<name>.faults``). A provider gets a switch at every start or end of a phase
    that names it; nothing switches back after the run, so a phase reaching the end holds.
    """
    known = list(base)
    moments: dict[str, set[float]] = {}
    for phase in phases:
        for provider in expand_providers(phase, known):
            times = moments.setdefault(provider, set())
            times.add(phase.at_s)
            end = _end(phase, duration_s)
            if end != math.inf:
                times.add(end)
    switches = []
    for provider, times in moments.items():
        for t in sorted(times):
            faults, active = profile_at(t, provider, base[provider], phases, known, duration_s)
            switches.append(Switch(t, provider, faults, active))
    return sorted(switches, key=lambda s: (s.at_s, known.index(s.provider)))
