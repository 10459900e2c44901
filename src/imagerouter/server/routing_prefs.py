"""The routing preferences of a submit: the key's defaults laid under the request's own, then
checked against the catalog before anything is charged."""

from __future__ import annotations

from imagerouter.auth import Principal
from imagerouter.generation import ImageRequest
from imagerouter.preferences import (
    PriceAboveMax,
    RoutingPreferences,
    RoutingRejected,
    check_preferences,
    merge_preferences,
    provider_names,
)
from imagerouter.router import Router
from imagerouter.server.errors import api_error

__all__ = ["check_routing", "with_key_defaults"]


def with_key_defaults(principal: Principal, image_request: ImageRequest) -> ImageRequest:
    """``image_request`` with its key's default routing preferences laid under its own, field
    by field (a field the request sets wins); stored so on the job, for every replica."""
    if principal.routing is None:
        return image_request
    defaults = RoutingPreferences.model_validate_json(principal.routing)
    merged = merge_preferences(defaults, image_request.routing)
    return image_request.model_copy(update={"routing": merged})


def check_routing(router: Router, image_request: ImageRequest, price: int) -> None:
    """422 naming the field when the request's ``routing`` names a provider that does not
    serve its model, leaves nothing to call, or caps the price below ``price``."""
    prefs = image_request.routing
    if prefs is None:
        return
    model = router.resolve(image_request.model)
    try:
        check_preferences(
            prefs,
            model,
            router.candidates_for(model),
            price,
            provider_names(router.catalog, router.instances),
        )
    except PriceAboveMax as exc:
        raise api_error(
            exc, field=exc.field, extra={"price": exc.price, "max_price_credits": exc.max_price}
        ) from None
    except RoutingRejected as exc:
        raise api_error(exc, field=exc.field) from None
