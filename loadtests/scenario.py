"""Load-test scenarios: a traffic shape coupled with a farm timeline, read from TOML.

A bundled scenario lives in ``loadtests/scenarios/<name>.loadtest.toml`` (a user's may be any
path; ``docs/scenarios.md`` says which tool reads which scenario file) and says, on a nominal
clock of ``duration_s`` seconds that the orchestrator stretches or squeezes to ``--duration``:

::

    description = "fal rate-limits at the peak, then goes down for a minute"
    duration_s = 300              # nominal length: every time below scales to --duration
    users = 100                   # default --users: Locust users at the shape's peak
    farm_scenario = "loadtest"    # the farm's base profiles: a farm scenario (name or file)

    [traffic]
    shape = "launch_week"         # imagerouter.shapes: steady, ramp, spike, launch_week
    shape_params = { spikes = 3 }
    jobs_per_user_s = 0.2         # each user submits this many jobs a second
    models = { "gpt-image-2" = 5, "flux-dev" = 3 }      # weights
    follow = { poll = 2, sse = 1, webhook = 1 }         # how clients learn the outcome

    [router]                      # laid over the router's settings for this run
    deadline_s = 30

    [[phases]]                    # a farm fault profile laid over the base, at_s..until_s
    name = "fal down"
    providers = ["fal"]
    at_s = 150
    until_s = 210
    faults = { down = true }

A phase whose ``until_s`` is absent (or reaches ``duration_s``) holds through the drain that
follows the traffic, so that, say, a total outage stays total while the last jobs finish.

This module imports nothing from Locust: the orchestrator, the tests and the Locust file share it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imagerouter import (
    Catalog,
    ImageRequest,
    RoutingPreferences,
    UnknownModel,
    UnsupportedRequest,
    load_catalog,
    load_plugins,
)
from imagerouter.bundled import Bundled, resolve_bundled
from imagerouter.config import Settings, load_toml, validate
from imagerouter.errors import ConfigError
from imagerouter.server.settings import ServerSettings
from imagerouter.shapes import Shape, make_shape
from mockproviders.profile import FaultProfile, validation_problems
from mockproviders.scenario import Scenario, load_scenario

__all__ = [
    "LOAD_SCENARIOS",
    "SCENARIO_DIR",
    "Expect",
    "FollowMode",
    "LoadScenario",
    "Phase",
    "Traffic",
    "bundled_scenarios",
    "load_load_scenario",
]

#: Where the bundled load-test scenarios live.
SCENARIO_DIR = Path(__file__).parent / "scenarios"
#: The bundled load-test scenarios: ``loadtests/scenarios/<name>.loadtest.toml``.
LOAD_SCENARIOS = Bundled("load-test scenario", SCENARIO_DIR, ".loadtest.toml")

FollowMode = Literal["poll", "sse", "webhook"]
Weights = dict[str, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive_weights(weights: Weights) -> Weights:
    if not weights:
        raise ValueError("needs at least one entry")
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise ValueError("weights must be ≥ 0 and add up to more than 0")
    return weights


class RoutingShare(_Strict):
    """A share of the submits that carry these routing preferences (the request's ``routing``)."""

    share: float = Field(gt=0, le=1)
    preferences: RoutingPreferences


class Traffic(_Strict):
    """What the Locust users send and how they follow it."""

    shape: str = "steady"
    shape_params: dict[str, float] = Field(default_factory=dict)
    jobs_per_user_s: float = Field(default=0.2, gt=0, le=50)
    models: Weights = Field(
        default_factory=lambda: {"gpt-image-2": 5, "flux-dev": 3, "nano-banana-pro": 2}
    )
    sizes: Weights = Field(default_factory=lambda: {"1024x1024": 6, "1536x1024": 2, "1024x1536": 2})
    qualities: Weights = Field(
        default_factory=lambda: {"standard": 6, "low": 2, "high": 1, "auto": 1}
    )
    #: How clients learn a job's outcome; a mode the server lacks falls back to polling.
    follow: dict[FollowMode, float] = Field(default_factory=lambda: {"poll": 1.0})
    #: Share of submits that are video jobs (of ``video_models``, the models' own defaults:
    #: no size or quality); the rest are image jobs of ``models``.
    video_fraction: float = Field(default=0.0, ge=0, le=1)
    video_models: Weights = Field(default_factory=lambda: {"veo3-fast": 1, "seedance-lite": 2})
    #: Share of submits that carry an ``Idempotency-Key``.
    idempotency_fraction: float = Field(default=0.3, ge=0, le=1)
    #: Share of keyed submits sent twice (a client retry): the second must replay the first.
    idempotent_retry_fraction: float = Field(default=0.1, ge=0, le=1)
    #: Share of jobs the client cancels (``DELETE``) shortly after submitting.
    cancel_fraction: float = Field(default=0.02, ge=0, le=1)
    #: Seconds between polls of a followed job.
    poll_interval_s: float = Field(default=0.5, gt=0)
    #: Shares of submits with client routing preferences (the rest carry none); ≤ 1 in all.
    routing: list[RoutingShare] = Field(default_factory=list)

    @field_validator("routing")
    @classmethod
    def _routing_shares(cls, shares: list[RoutingShare]) -> list[RoutingShare]:
        if sum(share.share for share in shares) > 1 + 1e-9:
            raise ValueError("routing shares add up to more than 1")
        return shares

    def routing_of(self, roll: float) -> dict[str, Any] | None:
        """The ``routing`` body of the submit whose uniform draw is ``roll``, or None."""
        for share in self.routing:
            if roll < share.share:
                return share.preferences.model_dump(exclude_unset=True)
            roll -= share.share
        return None

    @field_validator("models", "video_models", "sizes", "qualities", "follow")
    @classmethod
    def _weights(cls, weights: Weights) -> Weights:
        return _positive_weights(weights)

    @field_validator("shape")
    @classmethod
    def _known_shape(cls, name: str) -> str:
        make_shape(name, peak_per_s=1.0, duration_s=1.0)  # raises ValueError for unknown names
        return name


#: ``providers = ["*"]`` in a phase means every provider the farm serves.
EVERY_PROVIDER = "*"


class Phase(_Strict):
    """A fault profile laid over some providers' base profiles from ``at_s`` to ``until_s``."""

    name: str
    providers: list[str] = Field(min_length=1)
    at_s: float = Field(default=0.0, ge=0)
    until_s: float | None = Field(default=None, gt=0)
    faults: dict[str, Any]

    @model_validator(mode="after")
    def _valid(self) -> Phase:
        if self.until_s is not None and self.until_s <= self.at_s:
            raise ValueError("until_s must be greater than at_s")
        if {"phases", "seed"} & set(self.faults):
            raise ValueError("a phase's faults cannot set phases or seed")
        try:
            FaultProfile.model_validate(self.faults)
        except ValidationError as exc:
            problem = validation_problems(exc, prefix="faults")[0]
            raise ValueError(f"{problem['field']}: {problem['reason']}") from None
        return self


class Expect(_Strict):
    """Scenario-specific checks on top of the ones every run gets."""

    min_completed_fraction: float | None = Field(default=None, ge=0, le=1)
    max_completed_fraction: float | None = Field(default=None, ge=0, le=1)
    #: The farm must have issued at least this many Retry-Afters: a scenario about the
    #: windows proves nothing when its load stayed under every limit (fewer ``--users``).
    min_retry_after_issued: int | None = Field(default=None, ge=1)


class LoadScenario(_Strict):
    """A traffic shape, a farm timeline, and the router and server settings they run under."""

    description: str = ""
    duration_s: float = Field(default=120.0, gt=0)
    users: int = Field(default=20, ge=1)
    #: The farm scenario whose profiles the phases are laid over (``farm``: its older name).
    farm_scenario: str = Field(
        default="loadtest", validation_alias=AliasChoices("farm_scenario", "farm")
    )
    seed: int = 1
    traffic: Traffic = Field(default_factory=Traffic)
    router: dict[str, Any] = Field(default_factory=dict)
    server: dict[str, Any] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=list)
    expect: Expect = Field(default_factory=Expect)
    #: The file it came from, and its name (the file name without ``.loadtest.toml``).
    source: str | None = None
    name: str = "scenario"
    #: The farm scenario's own phases, set by the loader: the farm runs them on its clock (which
    #: the run restarts as Locust starts), not the run's timeline; reported beside ``phases``.
    farm_phases: list[Phase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _phases_inside(self) -> LoadScenario:
        for index, phase in enumerate(self.phases):
            if phase.at_s >= self.duration_s:
                raise ValueError(
                    f"phases[{index}] ({phase.name!r}) starts at {phase.at_s:g} s, "
                    f"not before the end of the {self.duration_s:g} s run"
                )
        return self

    def scaled(self, duration_s: float) -> LoadScenario:
        """This scenario stretched to ``duration_s``: every phase time scales with it."""
        if not duration_s > 0:
            raise ValueError(f"duration must be > 0, not {duration_s!r}")
        factor = duration_s / self.duration_s
        phases = [
            phase.model_copy(
                update={
                    "at_s": phase.at_s * factor,
                    "until_s": None if phase.until_s is None else phase.until_s * factor,
                }
            )
            for phase in self.phases
        ]
        return self.model_copy(update={"duration_s": duration_s, "phases": phases})

    def shape(self, users: int | None = None) -> Shape:
        """The arrival-rate shape over the run, peaking at ``users`` × jobs_per_user_s."""
        peak = (users or self.users) * self.traffic.jobs_per_user_s
        return make_shape(
            self.traffic.shape,
            peak_per_s=peak,
            duration_s=self.duration_s,
            **self.traffic.shape_params,
        )

    def reported_phases(self) -> list[Phase]:
        """The phases a run's report shows: the scenario's, then the farm scenario's own that
        start within the run (``scaled`` leaves those alone: they keep the farm's clock)."""
        return [*self.phases, *(p for p in self.farm_phases if p.at_s < self.duration_s)]

    def phase_spans(self) -> list[tuple[str, float, float]]:
        """``(name, start, end)`` of every reported phase on the run clock (open ends at the
        run's end)."""
        return [
            (p.name, p.at_s, min(p.until_s or self.duration_s, self.duration_s))
            for p in self.reported_phases()
        ]


def bundled_scenarios() -> list[str]:
    """The names of the scenarios shipped in ``loadtests/scenarios/``."""
    return LOAD_SCENARIOS.names()


def load_load_scenario(path_or_name: str | os.PathLike[str]) -> LoadScenario:
    """Read a load-test scenario by path or bundled name.

    Raises ConfigError naming the file, the field (``phases[1].faults.error_rates.429``) and
    the reason, for a missing file, bad TOML or a bad field.
    """
    found = resolve_bundled(path_or_name, LOAD_SCENARIOS)
    path = found.path
    data = load_toml(path)
    for reserved in ("source", "name", "farm_phases"):
        if reserved in data:
            raise ConfigError("set by the loader, not the file", file=str(path), field=reserved)
    data = {**data, "source": str(path), "name": found.name}
    scenario = validate(LoadScenario, data, file=str(path))
    farm = _check_references(scenario, str(path))
    return scenario.model_copy(update={"farm_phases": farm_phases(farm)})


def farm_phases(farm: Scenario) -> list[Phase]:
    """A farm scenario's own phases as a load test's, each named for its provider and what it
    sets (``openai: down (farm scenario)``)."""
    return [
        Phase(
            name=f"{provider}: {', '.join(sorted(phase.faults.model_fields_set))} (farm scenario)",
            providers=[provider],
            at_s=phase.at_s,
            until_s=phase.until_s,
            faults=phase.faults.model_dump(mode="json", exclude_unset=True),
        )
        for provider, profile in sorted(farm.providers.items())
        for phase in profile.phases
    ]


def _check_references(scenario: LoadScenario, file: str) -> Scenario:
    """What the file names that only the rest of the system knows, checked as the file is
    read rather than after the server has started: the ``[router]`` and ``[server]`` tables,
    the farm scenario,
    and the providers the phases name (the farm serves the plugins' adapters); the farm
    scenario read."""
    validate(Settings, {"router": scenario.router}, file=file)
    validate(ServerSettings, scenario.server, file=file, prefix="server")
    try:
        farm = load_scenario(scenario.farm_scenario, relative_to=Path(file).parent)
    except ConfigError as exc:
        raise ConfigError(str(exc), file=file, field="farm_scenario") from None
    _check_traffic(scenario.traffic, load_catalog(scenario.router.get("catalog")), file)
    if not any(name != EVERY_PROVIDER for phase in scenario.phases for name in phase.providers):
        return farm
    known = sorted(adapter.name for adapter in load_plugins(log_problems=False).farm_adapters)
    for index, phase in enumerate(scenario.phases):
        for name in phase.providers:
            if name != EVERY_PROVIDER and name not in known:
                raise ConfigError(
                    f"the farm serves no provider {name!r} (it serves {', '.join(known)})",
                    file=file,
                    field=f"phases[{index}].providers",
                )
    return farm


def _check_traffic(traffic: Traffic, catalog: Catalog, file: str) -> None:
    """Every submit the traffic can send is one the server takes: its models in the catalog,
    and each image model with each size and quality of the mix (a load test whose submits are
    all refused would measure nothing), named by the field that makes the refusal."""
    videos = traffic.video_models if traffic.video_fraction else {}
    for field, models in (("traffic.models", traffic.models), ("traffic.video_models", videos)):
        for name in models:
            try:
                model = catalog.resolve(name)
            except UnknownModel as exc:
                raise ConfigError(str(exc), file=file, field=f"{field}.{name}") from None
            wanted = "video" if field == "traffic.video_models" else "image"
            if model.kind != wanted:
                raise ConfigError(
                    f"{name} makes {model.kind}s, not {wanted}s", file=file, field=f"{field}.{name}"
                )
    for name in traffic.models:
        model = catalog.resolve(name)
        for size in traffic.sizes:
            for quality in traffic.qualities:
                try:
                    model.check(ImageRequest(model=name, prompt="x", size=size, quality=quality))
                except ValidationError as exc:
                    problem = validation_problems(exc)[0]
                    where = "sizes" if problem["field"] == "size" else "qualities"
                    value = size if where == "sizes" else quality
                    raise ConfigError(
                        problem["reason"], file=file, field=f"traffic.{where}.{value}"
                    ) from None
                except UnsupportedRequest as exc:
                    raise ConfigError(
                        f"{name}: {exc}", file=file, field=f"traffic.models.{name}"
                    ) from None
