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

    [images]
    png_bytes = "realistic"     # or "tiny"
    bytes_per_pixel = 1.5       # realistic only: 1024x1024 is about 1.5 MB

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
from mockproviders.images import DEFAULT_BYTES_PER_PIXEL, PngMode
from mockproviders.profile import FaultProfile, validation_problems

__all__ = [
    "FARM_SCENARIOS",
    "SCENARIO_DIR",
    "ImageSettings",
    "Scenario",
    "bundled_scenarios",
    "load_scenario",
]

#: Where the bundled scenarios live.
SCENARIO_DIR = Path(__file__).parent / "scenarios"
#: The bundled farm scenarios: ``mockproviders/scenarios/<name>.toml``.
FARM_SCENARIOS = Bundled("farm scenario", SCENARIO_DIR, ".toml")


class ImageSettings(BaseModel):
    """``[images]``: how big the farm's PNGs are (always exactly the requested width x height).

    ``png_bytes = "realistic"`` (the default) answers about ``bytes_per_pixel`` bytes a pixel,
    like a photo PNG, so storage, bandwidth and memory under load are real; ``"tiny"`` answers
    one-colour PNGs of a few hundred bytes, for runs that only care about the control flow.
    ``cache_mb`` bounds the farm's cache of pixel data (one entry per size).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    png_bytes: PngMode = "realistic"
    bytes_per_pixel: float = Field(DEFAULT_BYTES_PER_PIXEL, ge=0.05, le=3.0)
    cache_mb: int = Field(256, ge=1, le=65536)


class VideoSettings(BaseModel):
    """``[videos]``: how big the farm's MP4s are. ``bytes_per_second = 0`` (the default)
    answers files of a few KB; a number pads each video to that many bytes a second of output
    (about 1_000_000 is a real 720p video), streamed, never held in memory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes_per_second: int = Field(0, ge=0, le=64 * 1024 * 1024)
    #: Serve each video download at most this fast (bytes a second; 0: as fast as it goes), so
    #: a benchmark can hold many downloads in flight.
    serve_bytes_per_s: int = Field(0, ge=0)


class Scenario(BaseModel):
    """A seed and the fault profile of each provider (providers not named have no faults),
    and the size of the images the farm answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    description: str = ""
    providers: dict[str, FaultProfile] = Field(default_factory=dict)
    images: ImageSettings = Field(default_factory=ImageSettings)
    videos: VideoSettings = Field(default_factory=VideoSettings)

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
