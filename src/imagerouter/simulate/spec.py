"""Simulation scenarios: a farm scenario, the traffic that meets it, and the router policy.

The farm's scenario loader rejects unknown top-level tables, so a simulation scenario is its own
small TOML file (bundled ones are ``scenarios/<name>.simulate.toml``; ``docs/scenarios.md``
says which tool reads which scenario file) whose ``[simulation]`` table names the farm scenario
it runs against::

    [simulation]
    description = "A launch day: 20,000 jobs a minute at the peak."
    farm_scenario = "launch-week"     # a bundled farm scenario, or a path (relative to this file)
    hours = 24
    seed = 1
    shape = "launch_week"             # a shape of src/imagerouter/shapes.py
    peak_per_min = 20000
    shape_params = { spikes = 3 }
    models = { "gpt-image-2" = 0.6, "flux-dev" = 0.3, "nano-banana-pro" = 0.1 }
    quality = { standard = 0.85, high = 0.1, low = 0.05 }

    [simulation.accounts.fal-main]    # one provider instance: one account, one API key
    plugin = "fal"
    key = "fal-enterprise"            # instances that share a key share its rate limit
    faults = { rate_limit = { rpm = 9000, burst = 300 } }   # laid over the farm's fal profile
    max_concurrent = 4000             # the provider's cap on generations in flight for the key
    over_capacity = "queue"           # or "reject" (429 with the profile's Retry-After)
    weight = 2                        # any router provider setting: weight, max_concurrency…

    [simulation.config.router.breaker]   # the router config every policy starts from
    consecutive_failures = 5

Without ``farm_scenario`` the rest of the file (``seed``, ``[providers.*]``) is read as the farm
scenario itself. Any farm scenario (a bundled name or a file) also runs as is, with the
defaults below. A *policy* file (``--config``, ``--compare``) is a router config TOML laid over
``simulation.config``: ``[router.breaker]``, ``[providers.fal-main] max_concurrency = 50``,
``catalog = "other-catalog.toml"``, or an inline ``[catalog.models.…]`` table.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imagerouter.bundled import Bundled, resolve_bundled
from imagerouter.catalog import Catalog, load_catalog
from imagerouter.config import Settings, deep_merge, load_toml, validate
from imagerouter.errors import ConfigError, UnknownModel
from imagerouter.preferences import RoutingPreferences
from mockproviders.profile import FaultProfile, validation_problems
from mockproviders.scenario import FARM_SCENARIOS, Scenario, load_scenario

__all__ = [
    "SIMULATIONS",
    "SIM_SCENARIO_DIR",
    "Account",
    "RoutingShare",
    "SimulationSettings",
    "SimulationSpec",
    "apply_policy",
    "bundled_simulations",
    "deep_merge",
    "load_spec",
]

#: Where the bundled simulation scenarios live.
SIM_SCENARIO_DIR = Path(__file__).parent / "scenarios"
#: The bundled simulation scenarios: ``scenarios/<name>.simulate.toml``.
SIMULATIONS = Bundled("simulation scenario", SIM_SCENARIO_DIR, ".simulate.toml")

Tier = Literal["low", "standard", "high"]


class Account(BaseModel):
    """One provider instance as the simulation sees it: the account behind it and its router
    settings. Fields other than ``key``, ``faults``, ``max_concurrent``, ``over_capacity`` and
    ``api`` are router provider settings (``[providers.<name>]``)."""

    model_config = ConfigDict(extra="allow")

    plugin: str | None = None
    key: str | None = Field(default=None, min_length=1, description="Default: sim-<name>.")
    faults: FaultProfile | None = Field(
        default=None, description="Laid over the farm profile of the plugin; phases are added."
    )
    max_concurrent: int | None = Field(default=None, ge=1)
    over_capacity: Literal["queue", "reject"] = "queue"
    api: Literal["sync", "queue"] | None = Field(
        default=None,
        description="How results come back; default by plugin (fal, wavespeed: queue).",
    )

    def router_settings(self) -> dict[str, Any]:
        """The ``[providers.<name>]`` settings this account contributes to the router config."""
        settings = dict(self.model_extra or {})
        if self.plugin is not None:
            settings["plugin"] = self.plugin
        return settings


class RoutingShare(BaseModel):
    """A share of the jobs whose clients send these routing preferences (``routing`` on the
    request): ``[[simulation.routing]] share = 0.1, preferences = { sort = "price" }``."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(gt=0, le=1)
    preferences: RoutingPreferences


class SimulationSettings(BaseModel):
    """The ``[simulation]`` table: traffic, job mix, accounts and the base router config."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    farm_scenario: str | None = None
    hours: float = Field(default=1.0, gt=0)
    seed: int = 0
    shape: str = "steady"
    peak_per_min: float = Field(default=600.0, gt=0)
    shape_params: dict[str, float] = Field(default_factory=dict)
    models: dict[str, float] = Field(default_factory=lambda: {"gpt-image-2": 1.0})
    quality: dict[Tier, float] = Field(default_factory=lambda: {"standard": 1.0})
    bucket_s: float | None = Field(default=None, gt=0, description="Chart resolution.")
    accounts: dict[str, Account] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    #: Shares of the jobs with client routing preferences (the rest have none); ≤ 1 in all.
    routing: list[RoutingShare] = Field(default_factory=list)

    @model_validator(mode="after")
    def _weights(self) -> SimulationSettings:
        """Mixes need at least one positive weight and no negative one."""
        for name in ("models", "quality"):
            weights = getattr(self, name)
            if not weights or any(w < 0 for w in weights.values()) or not sum(weights.values()):
                raise ValueError(f"{name} needs non-negative weights, at least one positive")
        if sum(r.share for r in self.routing) > 1 + 1e-9:
            raise ValueError("routing shares add up to more than 1")
        return self


@dataclass(frozen=True)
class SimulationSpec:
    """Everything one simulation run needs, resolved: settings, farm scenario and policy.

    Attributes:
        name: the scenario's name (file stem).
        settings: the ``[simulation]`` table.
        farm: the farm scenario (fault profiles per provider).
        config: the router config (``[router]``, ``[providers.*]``, ``catalog``) with every
            policy file laid over it.
        catalog: the catalog, when a policy changed it (else the router loads the shipped one).
        policy: the policy's name (its file stem, or ``"base"``).
        source: the file the scenario came from.
    """

    name: str
    settings: SimulationSettings
    farm: Scenario
    config: dict[str, Any] = field(default_factory=dict)
    catalog: Catalog | None = None
    policy: str = "base"
    source: str = ""

    def with_overrides(
        self,
        *,
        hours: float | None = None,
        seed: int | None = None,
        peak_per_min: float | None = None,
    ) -> SimulationSpec:
        """The same spec with the run length, seed or peak rate changed."""
        update: dict[str, Any] = {}
        if hours is not None:
            update["hours"] = hours
        if seed is not None:
            update["seed"] = seed
        if peak_per_min is not None:
            update["peak_per_min"] = peak_per_min
        if not update:
            return self
        for key, value in update.items():
            if key != "seed" and not value > 0:
                raise ConfigError(f"must be > 0, not {value!r}", field=f"simulation.{key}")
        return replace(self, settings=self.settings.model_copy(update=update))


def fault_phases(spec: SimulationSpec) -> list[dict[str, Any]]:
    """Every fault phase of the run, by provider (or account), start and end on the scenario
    clock, and whether the run reaches it: the phases keep their clock when ``--hours``
    shortens the run, so a short run can end before the faults it was meant to show."""
    end_s = spec.settings.hours * 3600
    profiles = [(name, profile) for name, profile in spec.farm.providers.items()]
    profiles += [
        (name, account.faults)
        for name, account in spec.settings.accounts.items()
        if account.faults is not None
    ]
    return sorted(
        (
            {
                "provider": name,
                "at_s": phase.at_s,
                "until_s": phase.until_s,
                "reached": phase.at_s < end_s,
            }
            for name, profile in profiles
            for phase in profile.phases
        ),
        key=lambda phase: (phase["at_s"], phase["provider"]),
    )


def bundled_simulations() -> list[str]:
    """The names of the simulation scenarios that ship with imagerouter."""
    return SIMULATIONS.names()


def _validate_settings(data: Any, file: str) -> SimulationSettings:
    try:
        return SimulationSettings.model_validate(data)
    except ValidationError as exc:
        first = validation_problems(exc, prefix="simulation")[0]
        raise ConfigError(first["reason"], file=file, field=first["field"]) from None


def _inline_farm(data: dict[str, Any], file: str) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        first = validation_problems(exc)[0]
        raise ConfigError(first["reason"], file=file, field=first["field"] or None) from None
    scenario._source = file
    return scenario


def load_spec(name_or_path: str | Path) -> SimulationSpec:
    """A simulation scenario from a file or a bundled name (simulation scenarios first, then
    the farm's). Raises ConfigError naming the file, the field and the reason."""
    found = resolve_bundled(name_or_path, SIMULATIONS, FARM_SCENARIOS)
    path, file = found.path, str(found.path)
    data = load_toml(path)
    simulation = data.pop("simulation", None)
    if simulation is None:  # a plain farm scenario: the defaults drive it
        return SimulationSpec(
            name=found.name,
            settings=SimulationSettings(),
            farm=load_scenario(path),
            source=file,
        )
    settings = _validate_settings(simulation, file)
    _check_references(settings, file)
    if settings.farm_scenario is not None:
        if data:
            raise ConfigError(
                "a scenario with simulation.farm_scenario has only the [simulation] table",
                file=file,
                field=sorted(data)[0],
            )
        farm = load_scenario(settings.farm_scenario, relative_to=path.parent)
    else:
        farm = _inline_farm(data, file)
    return SimulationSpec(
        name=found.name,
        settings=settings,
        farm=farm,
        config=copy.deepcopy(settings.config),
        source=file,
    )


def _check_references(settings: SimulationSettings, file: str) -> None:
    """What the ``[simulation]`` table names that only the rest of the system knows, named in
    its file as it is read: the traffic shape, the models of the mix, the accounts' plugins
    (found later, the router named neither the file nor the table's field)."""
    from imagerouter.plugins import load_plugins
    from imagerouter.shapes import make_shape

    try:
        make_shape(settings.shape, peak_per_s=1.0, duration_s=60.0, **settings.shape_params)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="simulation.shape") from None
    catalog = load_catalog(settings.config.get("catalog"))
    for model in settings.models:
        try:
            catalog.resolve(model)
        except UnknownModel as exc:
            raise ConfigError(str(exc), file=file, field=f"simulation.models.{model}") from None
    plugins = [a.plugin for a in settings.accounts.values() if a.plugin is not None]
    if not plugins:
        return
    known = load_plugins(plugins_dir=settings.config.get("plugins_dir"), log_problems=False)
    for name, account in settings.accounts.items():
        if account.plugin is not None and account.plugin not in known.providers:
            raise ConfigError(
                f"no provider plugin {account.plugin!r} is installed "
                f"(loaded: {', '.join(sorted(known.providers))})",
                file=file,
                field=f"simulation.accounts.{name}.plugin",
            )


def apply_policy(spec: SimulationSpec, policy: str | Path) -> SimulationSpec:
    """``spec`` with the router config TOML ``policy`` laid over its config.

    ``catalog`` in the policy is a catalog file (relative to the policy file) or an inline
    catalog table; either is merged over the shipped catalog.
    """
    path = Path(policy)
    data = load_toml(path)
    catalog = spec.catalog
    inline = data.pop("catalog", None)
    if isinstance(inline, str):
        file = inline if Path(inline).is_absolute() else str(path.parent / inline)
        catalog = load_catalog(file)
    elif isinstance(inline, Mapping):
        override = validate(Catalog, {**inline, "sources": (str(path),)}, file=str(path))
        catalog = (catalog or load_catalog()).merged(override)
    elif inline is not None:
        raise ConfigError("must be a file name or a table", file=str(path), field="catalog")
    # the policy's own mistakes, named in its file (the merged config is checked only when the
    # router is built, where no file is known)
    validate(Settings, data, file=str(path))
    return replace(
        spec,
        config=deep_merge(spec.config, data),
        catalog=catalog,
        policy=path.stem if spec.policy == "base" else f"{spec.policy}+{path.stem}",
    )
