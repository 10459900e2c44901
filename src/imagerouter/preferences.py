"""The client's routing preferences for one job: which providers, in what order, at what price.

A request may carry ``routing`` (names follow OpenRouter's provider routing where they fit)::

    {"only": ["fal", "wavespeed"], "ignore": ["openai"], "order": ["wavespeed"],
     "sort": "price", "allow_fallbacks": false, "max_price_credits": 40, "max_cost_usd": 0.03}

A provider is named by its instance name (``fal-eu``) or by the catalog's provider id (``fal``,
matching every instance of that plugin). The preferences are checked against the catalog before
the job is charged (:func:`check_preferences`: an unknown name, a price above
``max_price_credits`` or nothing left to call is a 422), and applied once per job to the model's
candidates (:func:`apply_preferences`): ``only``/``ignore``/``max_cost_usd`` filter, ``sort``
then ``order`` fix the order, and ``allow_fallbacks: false`` keeps only the first. Every
candidate left out is returned with its reason, so that the plan records it as a skip.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from imagerouter.errors import ImageRouterError

if TYPE_CHECKING:
    from imagerouter.catalog import Catalog, CatalogModel
    from imagerouter.routing import Candidate

__all__ = [
    "AppliedPreferences",
    "PriceAboveMax",
    "RoutingPreferences",
    "RoutingRejected",
    "apply_preferences",
    "check_preferences",
    "merge_preferences",
    "parse_key_defaults",
    "provider_names",
]

Sort = Literal["price", "latency", "throughput"]
ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Names = Annotated[list[ProviderName], Field(max_length=32)]


class RoutingPreferences(BaseModel):
    """Where the client allows its job to go, and in what order (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: Names | None = Field(
        default=None, description="Providers to try first, in this order; the rest follow."
    )
    only: Names | None = Field(default=None, description="Use only these providers.")
    ignore: Names | None = Field(default=None, description="Never use these providers.")
    allow_fallbacks: bool = Field(
        default=True,
        strict=True,
        description="false: only the first eligible provider is tried (retries into it as "
        "the policy allows); the job fails, and is refunded, if it cannot serve.",
    )
    sort: Sort | None = Field(
        default=None,
        description="price: cheapest cost_usd first; latency: lowest recent p50 first; "
        "throughput: most successful images per second of a call first.",
    )
    max_price_credits: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Refuse the job (422, nothing charged) if it costs more credits.",
    )
    max_cost_usd: float | None = Field(
        default=None,
        ge=0,
        strict=True,
        allow_inf_nan=False,
        description="Leave out providers whose cost_usd per image is above this (or unknown).",
    )


def merge_preferences(
    defaults: RoutingPreferences | None, request: RoutingPreferences | None
) -> RoutingPreferences | None:
    """``request`` laid over ``defaults`` field by field (the fields the request set win)."""
    if defaults is None or request is None:
        return request if defaults is None else defaults
    return defaults.model_copy(
        update={name: getattr(request, name) for name in request.model_fields_set}
    )


class RoutingRejected(ImageRouterError):
    """The request's routing preferences name an unknown provider or leave nothing to call."""

    code = "invalid_routing"

    def __init__(self, message: str, field: str) -> None:
        self.field = field
        super().__init__(message)


class PriceAboveMax(RoutingRejected):
    """The job costs more credits than the request's ``routing.max_price_credits``."""

    code = "price_above_max"

    def __init__(self, price: int, max_price: int) -> None:
        self.price, self.max_price = price, max_price
        super().__init__(
            f"routing.max_price_credits: the job costs {price} credits, above the maximum "
            f"{max_price}",
            "routing.max_price_credits",
        )


@dataclass(slots=True)
class AppliedPreferences:
    """The candidates a job may call, in order, and those left out with the reason why.

    ``fixed_order``: the plan keeps this order instead of re-ordering by the model's policy.
    """

    candidates: list[Candidate]
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)
    fixed_order: bool = False


def _matches(candidate: Candidate, name: str) -> bool:
    return name in (candidate.instance.name, candidate.entry.provider)


def provider_names(catalog: Catalog, instances: Iterable[str]) -> set[str]:
    """Every name a preference may use: the catalog's providers and the configured instances."""
    names = set(instances)
    names.update(e.provider for m in catalog.models.values() for e in m.providers)
    return names


def parse_key_defaults(text: str, known: Collection[str]) -> RoutingPreferences:
    """An API key's default preferences from JSON: :class:`RoutingRejected` naming the field
    if the JSON is malformed, a field is wrong, or a provider is none of ``known``."""
    try:
        prefs = RoutingPreferences.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(["routing", *(str(part) for part in first["loc"])])
        raise RoutingRejected(f"{where}: {first['msg']}", where) from None
    for list_name in ("order", "only", "ignore"):
        for index, name in enumerate(getattr(prefs, list_name) or ()):
            if name not in known:
                where = f"routing.{list_name}[{index}]"
                raise RoutingRejected(
                    f"{where}: unknown provider {name!r} (known: {', '.join(sorted(known))})",
                    where,
                )
    return prefs


def check_preferences(
    prefs: RoutingPreferences,
    model: CatalogModel,
    candidates: Sequence[Candidate],
    price: int,
    elsewhere: Collection[str] = (),
) -> None:
    """Raise :class:`RoutingRejected` if ``prefs`` names a provider that neither serves
    ``model`` nor is one of ``elsewhere`` (the router's other providers: a key's defaults may
    ignore a provider some models lack), leaves no candidate to call, or caps the price below
    ``price``."""
    serving = {entry.provider for entry in model.providers}
    serving.update(c.instance.name for c in candidates)
    for list_name in ("order", "only", "ignore"):
        for index, name in enumerate(getattr(prefs, list_name) or ()):
            if name not in serving and name not in elsewhere:
                raise RoutingRejected(
                    f"routing.{list_name}[{index}]: unknown provider {name!r} for model "
                    f"{model.name!r} (its providers: {', '.join(sorted(serving))})",
                    f"routing.{list_name}[{index}]",
                )
    if prefs.max_price_credits is not None and price > prefs.max_price_credits:
        raise PriceAboveMax(price, prefs.max_price_credits)
    if not _filter(prefs, candidates)[0]:
        raise RoutingRejected(
            f"routing: no provider of model {model.name!r} is left after "
            "routing.only, routing.ignore and routing.max_cost_usd",
            "routing",
        )


def _filter(
    prefs: RoutingPreferences, candidates: Sequence[Candidate]
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    kept: list[Candidate] = []
    skipped: list[tuple[Candidate, str]] = []
    for c in candidates:
        cost = c.entry.cost_usd
        if prefs.only is not None and not any(_matches(c, n) for n in prefs.only):
            skipped.append((c, "routing_only: not in the request's routing.only"))
        elif prefs.ignore and any(_matches(c, n) for n in prefs.ignore):
            skipped.append((c, "routing_ignore: in the request's routing.ignore"))
        elif prefs.max_cost_usd is not None and (cost is None or cost > prefs.max_cost_usd):
            shown = "unknown" if cost is None else f"${cost:g}"
            skipped.append(
                (
                    c,
                    f"max_cost: cost_usd {shown} above routing.max_cost_usd "
                    f"${prefs.max_cost_usd:g}",
                )
            )
        else:
            kept.append(c)
    return kept, skipped


def _sort_key(sort: Sort, candidate: Candidate) -> float:
    inf = float("inf")
    if sort == "price":
        return inf if candidate.entry.cost_usd is None else candidate.entry.cost_usd
    p50 = candidate.instance.health.p50()
    if sort == "latency":
        return inf if p50 is None else p50
    # throughput: expected successful calls per second of one call slot (unknown last).
    return inf if not p50 else -candidate.instance.health.score / p50


def apply_preferences(
    prefs: RoutingPreferences, candidates: Sequence[Candidate], policy: str, rng: random.Random
) -> AppliedPreferences:
    """The candidates ``prefs`` allows, in the order it asks for (see the module doc)."""
    from imagerouter.routing import order_candidates  # routing → generation → here

    kept, skipped = _filter(prefs, candidates)
    fixed = prefs.sort is not None or bool(prefs.order) or not prefs.allow_fallbacks
    if fixed:
        if prefs.sort is not None:
            sort = prefs.sort
            kept.sort(key=lambda c: _sort_key(sort, c))  # stable: catalog order breaks ties
        else:
            kept = order_candidates(policy, kept, rng)
        if prefs.order:
            rank = {name: i for i, name in enumerate(prefs.order)}
            last = len(rank)
            kept.sort(
                key=lambda c: min(rank.get(c.instance.name, last), rank.get(c.entry.provider, last))
            )
    if not prefs.allow_fallbacks and len(kept) > 1:
        first = kept[0].instance.name
        skipped += [
            (c, f"no_fallbacks: routing.allow_fallbacks is false; {first} first") for c in kept[1:]
        ]
        kept = kept[:1]
    return AppliedPreferences(kept, skipped, fixed)
