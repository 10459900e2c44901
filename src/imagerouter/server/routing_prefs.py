"""The routing preferences of a submit, checked against the catalog before anything is charged."""

from __future__ import annotations

from imagerouter.generation import ImageRequest
from imagerouter.preferences import (
    PriceAboveMax,
    RoutingRejected,
    check_preferences,
    provider_names,
)
from imagerouter.router import Router
from imagerouter.server.errors import api_error

__all__ = ["check_routing"]


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
