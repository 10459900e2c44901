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

:func:`load_scenario` takes a path or the name of a bundled scenario (a file in
``mockproviders/scenarios/``, e.g. ``"default"`` or ``"demo"``). A file that is not valid TOML
or not a valid scenario raises :class:`imagerouter.errors.ConfigError` naming the file, the
field path (``providers.acme.error_rates.429``) and the reason.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from imagerouter.errors import ConfigError
from mockproviders.profile import FaultProfile, validation_problems

__all__ = ["SCENARIO_DIR", "Scenario", "bundled_scenarios", "load_scenario"]

#: Where the bundled scenarios live.
SCENARIO_DIR = Path(__file__).parent / "scenarios"


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
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def _resolve(path_or_name: str | os.PathLike[str]) -> Path:
    path = Path(path_or_name)
    if path.is_file():
        return path
    bundled = SCENARIO_DIR / f"{path.name.removesuffix('.toml')}.toml"
    if path.parent == Path() and bundled.is_file():
        return bundled
    raise ConfigError(
        "no such scenario file, and no bundled scenario of that name "
        f"(bundled: {', '.join(bundled_scenarios())})",
        file=str(path_or_name),
    )


def load_scenario(path_or_name: str | os.PathLike[str]) -> Scenario:
    """Read a scenario from a TOML file, or by the name of a bundled one."""
    path = _resolve(path_or_name)
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
