"""Scenario files: a seed plus a fault profile per provider, read from TOML.

::

    seed = 42

    [providers.acme]
    error_rates = { "429" = 0.3 }
    retry_after_s = 2
    latency_ms = { dist = "lognormal", p50 = 20, p95 = 60 }

    [[providers.acme.phases]]
    at_s = 60
    until_s = 120
    faults = { down = true }

This is the *farm scenario*, the fault vocabulary the other scenario files build on: the
simulator's ``*.simulate.toml`` and the load tests' ``*.loadtest.toml`` name one
(``farm_scenario``); ``docs/scenarios.md`` says which tool reads which file.

:func:`load_scenario` takes a path or the name of a bundled scenario (a file in
``mockproviders/scenarios/``, e.g. ``"default"`` or ``"demo"``), found by the one resolver,
:func:`imagerouter.bundled.resolve_bundled`. A file that is not valid TOML or not a valid
scenario raises :class:`imagerouter.errors.ConfigError` naming the file, the field path
(``providers.acme.error_rates.429``) and the reason.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from imagerouter.bundled import Bundled, resolve_bundled
from imagerouter.errors import ConfigError
from mockproviders.profile import FaultProfile, validation_problems

__all__ = ["FARM_SCENARIOS", "SCENARIO_DIR", "Scenario", "bundled_scenarios", "load_scenario"]

#: Where the bundled scenarios live.
SCENARIO_DIR = Path(__file__).parent / "scenarios"
#: The bundled farm scenarios: ``mockproviders/scenarios/<name>.toml``.
FARM_SCENARIOS = Bundled("farm scenario", SCENARIO_DIR, ".toml")


class Scenario(BaseModel):
    """A seed and the fault profile of each provider (providers not named have no faults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    description: str = ""
    providers: dict[str, FaultProfile] = Field(default_factory=dict)

    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file this scenario was read from, if any."""
        return self._source


def bundled_scenarios() -> list[str]:
    """The names of the scenarios that ship with the farm."""
    return FARM_SCENARIOS.names()


def load_scenario(
    path_or_name: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None
) -> Scenario:
    """Read a scenario from a TOML file, or by the name of a bundled one.

    ``relative_to``: the directory of a file that names this scenario; a path there is
    tried first (a simulation or load-test scenario's ``farm_scenario = "mine.toml"``).
    """
    path = resolve_bundled(path_or_name, FARM_SCENARIOS, relative_to=relative_to).path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the scenario: {exc}", file=str(path)) from exc
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        first, rest = problems[0], problems[1:]
        reason = first["reason"]
        if rest:
            reason += "; also " + "; ".join(f"{p['field']}: {p['reason']}" for p in rest)
        raise ConfigError(reason, file=str(path), field=first["field"] or None) from exc
    scenario._source = str(path)
    return scenario
