"""The model catalog: which providers serve each model, in what order, at what price."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagerouter.capabilities import Capabilities, VideoCapabilities
from imagerouter.config import load_toml, validate
from imagerouter.errors import ConfigError, UnknownModel, UnsupportedRequest
from imagerouter.generation import VIDEO_FIELDS, ImageRequest, MediaKind

__all__ = ["Catalog", "CatalogModel", "ModelProvider", "load_catalog"]

RoutingPolicy = Literal["priority", "weighted", "latency", "cost"]
BASE_PIXELS = 1024 * 1024


class ModelProvider(BaseModel):
    """One provider (instance or plugin id) serving a model, with its own model id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="The provider's own model id.")
    weight: float = Field(default=1.0, gt=0)
    cost_usd: float | None = Field(
        default=None, ge=0, description="Provider price per image (per second of a video)."
    )
    audio_cost_usd: float | None = Field(
        default=None, ge=0, description="Video: price per second with sound, when it differs."
    )
    optional: bool = Field(
        default=False, description="Use only if this provider is installed and has a key."
    )
    image_model: str | None = Field(
        default=None, min_length=1, description="Video: the provider's id for a first frame."
    )

    def model_for(self, request: ImageRequest) -> str:
        """The provider's model id for ``request``: ``image_model`` when it gives a first
        frame, with ``{resolution}`` filled in (WaveSpeed has one endpoint per resolution)."""
        model = self.model
        if request.image_url is not None and self.image_model is not None:
            model = self.image_model
        if "{" in model:
            model = model.replace("{resolution}", request.resolution or "")
        return model


class Credits(BaseModel):
    """Credits per 1024x1024 image by quality tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int = Field(ge=0)
    standard: int = Field(ge=0)
    high: int = Field(ge=0)


class VideoCredits(BaseModel):
    """Credits per second of video by resolution, and what a sound track adds per second."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: dict[str, int] = Field(min_length=1, description="Resolution -> credits/s.")
    audio_per_second: int = Field(default=0, ge=0, description="Added per second with sound.")

    @model_validator(mode="after")
    def _check(self) -> VideoCredits:
        for resolution, credits in self.per_second.items():
            if credits < 0:
                raise ValueError(f"per_second.{resolution} is negative")
        return self


class CatalogModel(BaseModel):
    """A model clients can ask for: an image model (``credits`` and ``capabilities``) or a
    video model (``kind = "video"``, ``video_credits`` and ``video``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    #: The catalog file that defined this model, for error messages.
    source: str = ""
    description: str = ""
    kind: MediaKind = "image"
    policy: RoutingPolicy = "priority"
    hedge: bool = Field(default=False, description="Start the next provider at the first's p95.")
    credits: Credits | None = None
    capabilities: Capabilities = Field(default_factory=Capabilities)
    video_credits: VideoCredits | None = None
    video: VideoCapabilities | None = None
    providers: tuple[ModelProvider, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_kind(self) -> CatalogModel:
        if self.kind == "image":
            if self.credits is None:
                raise ValueError("an image model needs credits = { low, standard, high }")
            if self.video is not None or self.video_credits is not None:
                raise ValueError('video and video_credits are for kind = "video" models')
            return self
        if self.video is None or self.video_credits is None:
            raise ValueError('a kind = "video" model needs video and video_credits tables')
        missing = [r for r in self.video.resolutions if r not in self.video_credits.per_second]
        if missing:
            raise ValueError(f"video_credits.per_second lacks {', '.join(missing)}")
        if self.video.first_frame:
            for entry in self.providers:
                if entry.image_model is None:
                    raise ValueError(
                        f"first_frame = true, but provider {entry.provider} has no image_model"
                    )
        return self

    def check(self, request: ImageRequest) -> None:
        """Raise :class:`~imagerouter.errors.UnsupportedRequest` naming the first field of
        ``request`` this model cannot serve (too many images, a size or format it lacks, a
        video field for an image model, a duration or resolution a video model lacks)."""
        self.resolve_request(request)

    def resolve_request(self, request: ImageRequest) -> ImageRequest:
        """``request`` as this model serves it: checked, and for a video model with every
        video field filled in (defaults, or derived from ``size``)."""
        if self.video is not None:
            return self.video.resolve(self.name, request)
        for name in VIDEO_FIELDS:
            if getattr(request, name) is not None:
                raise UnsupportedRequest(name, f"{self.name} makes images; {name} is for video")
        self.capabilities.check(self.name, request)
        return request

    def price(self, request: ImageRequest) -> int:
        """Credits for ``request``. An image: tier price × size (in 1024² units, at least 1)
        × n. A video: (the resolution's credits per second, plus the audio surcharge when it
        has sound) × seconds.

        A request the model cannot serve has no price: it is checked first (so every route
        that prices a job before charging it refuses such a request with the field named).
        """
        request = self.resolve_request(request)
        if self.video_credits is not None:
            assert request.resolution is not None
            assert request.duration is not None
            per_second = self.video_credits.per_second[request.resolution]
            if request.generate_audio:
                per_second += self.video_credits.audio_per_second
            return per_second * request.duration
        assert self.credits is not None
        width, height = request.dimensions
        per_image = getattr(self.credits, request.tier) * max(1.0, width * height / BASE_PIXELS)
        return math.ceil(per_image * request.n)

    def cost_usd(self, entry: ModelProvider, request: ImageRequest, outputs: int) -> float | None:
        """What ``entry``'s provider charges for ``request`` (``outputs`` images; a video's
        seconds, with sound at ``audio_cost_usd``), or None when the catalog does not say."""
        if self.kind == "video":
            cost = entry.audio_cost_usd if request.generate_audio else None
            cost = cost if cost is not None else entry.cost_usd
            return None if cost is None else cost * (request.duration or 0)
        return None if entry.cost_usd is None else entry.cost_usd * outputs


class Catalog(BaseModel):
    """Models by name, and aliases from old names to current ones."""

    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, str] = Field(default_factory=dict)
    models: dict[str, CatalogModel] = Field(default_factory=dict)
    #: The files it was read from, for error messages.
    sources: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        for name, model in self.models.items():
            if model.name != name or not model.source:
                source = model.source or (self.sources[-1] if self.sources else "")
                self.models[name] = model.model_copy(update={"name": name, "source": source})
        return self

    def resolve(self, name: str) -> CatalogModel:
        """The model for ``name``: a model of that name first, else the model it aliases."""
        model = self.models.get(name)
        if model is None and name in self.aliases:
            model = self.models[self.aliases[name]]
        if model is None:
            raise UnknownModel(name, [*self.models, *self.aliases])
        return model

    def merged(self, other: Catalog) -> Catalog:
        """This catalog with ``other``'s models (replacing by name) and aliases laid on top."""
        return Catalog(
            aliases={**self.aliases, **other.aliases},
            models={**self.models, **other.models},
            sources=(*self.sources, *other.sources),
        )


def _read(path: Path | str, text_name: str) -> Catalog:
    data = load_toml(path)
    data["sources"] = (text_name,)
    return validate(Catalog, data, file=text_name)


def _take_additions(data: dict[str, Any], file: str) -> dict[str, list[ModelProvider]]:
    """Take out of a catalog file's ``models`` the entries that only add providers to a model
    below it (``[[models."flux-dev".add_providers]]``), each provider checked."""
    additions: dict[str, list[ModelProvider]] = {}
    models = data.get("models")
    if not isinstance(models, dict):
        return additions
    for name in [n for n, entry in models.items() if isinstance(entry, dict)]:
        if "add_providers" not in models[name]:
            continue
        entry = models.pop(name)
        field = f"models.{name}"
        if set(entry) != {"add_providers"} or not isinstance(entry["add_providers"], list):
            raise ConfigError(
                "add_providers extends a model defined below this file, and stands alone: "
                "give either a list of add_providers only, or the whole model without it",
                file=file,
                field=field,
            )
        additions[name] = [
            validate(ModelProvider, item, file=file, prefix=f"{field}.add_providers[{index}]")
            for index, item in enumerate(entry["add_providers"])
        ]
    return additions


def _add_providers(
    catalog: Catalog, additions: dict[str, list[ModelProvider]], file: str
) -> Catalog:
    """``catalog`` with each model's added providers after its own (its failover order)."""
    models = dict(catalog.models)
    for name, added in additions.items():
        field = f"models.{name}.add_providers"
        model = models.get(name)
        if model is None:
            raise ConfigError(
                f"no model {name!r} to add providers to; define it whole (with its credits)",
                file=file,
                field=field,
            )
        serving = {entry.provider for entry in model.providers}
        for entry in added:
            if entry.provider in serving:
                raise ConfigError(
                    f"{entry.provider!r} already serves {name}", file=file, field=field
                )
            serving.add(entry.provider)
        data = model.model_dump()
        data["providers"] = [*data["providers"], *(entry.model_dump() for entry in added)]
        models[name] = validate(CatalogModel, data, file=file, prefix=f"models.{name}")
    return Catalog(aliases=catalog.aliases, models=models, sources=catalog.sources)


def load_catalog(override: str | Path | None = None) -> Catalog:
    """The shipped catalog, with ``override`` (a TOML file) merged on top when given: its
    models replace the shipped ones by name, its ``add_providers`` entries extend them."""
    shipped = resources.files("imagerouter").joinpath("catalog.toml")
    with resources.as_file(shipped) as path:
        catalog = _read(path, "imagerouter/catalog.toml")
    if override is not None:
        file = str(override)
        data = load_toml(override)
        additions = _take_additions(data, file)
        data["sources"] = (file,)
        catalog = catalog.merged(validate(Catalog, data, file=file))
        catalog = _add_providers(catalog, additions, file)
    for alias, target in catalog.aliases.items():
        if target not in catalog.models:
            raise ConfigError(
                f"alias points to unknown model {target!r}",
                file=catalog.sources[-1],
                field=f"aliases.{alias}",
            )
    return catalog
