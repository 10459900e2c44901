"""The model catalog: which providers serve each model, in what order, at what price."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagerouter.capabilities import Capabilities
from imagerouter.config import load_toml, validate
from imagerouter.errors import ConfigError, UnknownModel
from imagerouter.generation import ImageRequest

__all__ = ["Catalog", "CatalogModel", "ModelProvider", "load_catalog"]

RoutingPolicy = Literal["priority", "weighted", "latency", "cost"]
BASE_PIXELS = 1024 * 1024


class ModelProvider(BaseModel):
    """One provider (instance or plugin id) serving a model, with its own model id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="The provider's own model id.")
    weight: float = Field(default=1.0, gt=0)
    cost_usd: float | None = Field(default=None, ge=0, description="Provider price per image.")
    optional: bool = Field(
        default=False, description="Use only if this provider is installed and has a key."
    )


class Credits(BaseModel):
    """Credits per 1024x1024 image by quality tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: int = Field(ge=0)
    standard: int = Field(ge=0)
    high: int = Field(ge=0)


class CatalogModel(BaseModel):
    """A model clients can ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    #: The catalog file that defined this model, for error messages.
    source: str = ""
    description: str = ""
    policy: RoutingPolicy = "priority"
    hedge: bool = Field(default=False, description="Start the next provider at the first's p95.")
    credits: Credits
    capabilities: Capabilities = Field(default_factory=Capabilities)
    providers: tuple[ModelProvider, ...] = Field(min_length=1)

    def check(self, request: ImageRequest) -> None:
        """Raise :class:`~imagerouter.errors.UnsupportedRequest` naming the first field of
        ``request`` this model cannot serve (too many images, a size or format it lacks)."""
        self.capabilities.check(self.name, request)

    def price(self, request: ImageRequest) -> int:
        """Credits for ``request``: tier price × size (in 1024² units, at least 1) × n.

        A request the model cannot serve has no price: it is checked first (so every route
        that prices a job before charging it refuses such a request with the field named).
        """
        self.check(request)
        width, height = request.dimensions
        per_image = getattr(self.credits, request.tier) * max(1.0, width * height / BASE_PIXELS)
        return math.ceil(per_image * request.n)


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


def load_catalog(override: str | Path | None = None) -> Catalog:
    """The shipped catalog, with ``override`` (a TOML file) merged on top when given."""
    shipped = resources.files("imagerouter").joinpath("catalog.toml")
    with resources.as_file(shipped) as path:
        catalog = _read(path, "imagerouter/catalog.toml")
    if override is not None:
        catalog = catalog.merged(_read(override, str(override)))
    for alias, target in catalog.aliases.items():
        if target not in catalog.models:
            raise ConfigError(
                f"alias points to unknown model {target!r}",
                file=catalog.sources[-1],
                field=f"aliases.{alias}",
            )
    return catalog
