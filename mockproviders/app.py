"""The farm's aiohttp application: every adapter's routes behind the fault pipeline, plus the
control API, on one port."""

from __future__ import annotations

from aiohttp import web

from mockproviders.control import add_control_routes
from mockproviders.keys import FARM_STATE
from mockproviders.pipeline import route_handler
from mockproviders.state import FarmState

__all__ = ["create_farm_app"]


async def _release_held_requests(app: web.Application) -> None:
    """On shutdown, requests held by a ``timeout`` fault let go (their connections reset)."""
    app[FARM_STATE].stopping.set()


def create_farm_app(state: FarmState) -> web.Application:
    """An application serving every adapter of ``state`` and the control API.

    Serve it with ``handler_cancellation=True`` (as :class:`mockproviders.Farm` does) so that a
    client giving up on a held request frees its handler.
    """
    app = web.Application(client_max_size=16 * 1024**2)
    app[FARM_STATE] = state
    for adapter in state.adapters.values():
        for route in adapter.routes():
            handler = route_handler(state, adapter, route)
            app.router.add_route(route.method, adapter.prefix + route.path, handler)
    add_control_routes(app)
    app.on_shutdown.append(_release_held_requests)
    return app
