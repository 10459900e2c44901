"""What joins the router and the job API to a running farm: the farm's side of the boundary.

The core never imports the farm. A router for a farm is built here (:func:`farm_router`), and
``imagerouter serve --farm`` finds :func:`mount_farm` through the ``imagerouter.farm`` entry
point, only when a farm is asked for: it starts the farm in-process, with every provider
plugins add, and gives the app a router whose providers all point at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from imagerouter.plugins import load_plugins
from imagerouter.router import Router
from imagerouter.server.keys import farm_key, router_key
from mockproviders.farm import Farm

__all__ = ["FARM_OPTIONS", "farm_router", "mount_farm"]

#: Poll quickly against the farm: its queues finish in milliseconds.
FARM_OPTIONS = {"poll_initial_s": 0.02, "poll_factor": 1.5, "poll_max_s": 0.25}


def farm_router(farm: Any, config: Mapping[str, Any] | None = None, **kwargs: Any) -> Router:
    """A router whose providers all point at a running mock farm.

    ``farm`` is a :class:`mockproviders.Farm` or its ``GET /_farm/providers`` document; every
    provider the farm serves and a loaded plugin speaks is configured with the farm's base URL
    and a farm key, and every other plugin is disabled, so a farm run never reaches a real API.
    ``config`` is laid over that (e.g. router timeouts); ``kwargs`` go to
    :meth:`Router.from_config`.
    """
    info = farm.providers() if hasattr(farm, "providers") else farm
    plugins = kwargs.setdefault("plugins", load_plugins())
    providers: dict[str, Any] = {
        name: {"enabled": False} for name in plugins.providers if name not in info["providers"]
    }
    for name, entry in info["providers"].items():
        if name not in plugins.providers:
            continue
        providers[name] = {
            "base_url": entry["base_url"],
            "api_key": f"farm-key-{name}",
            "options": dict(FARM_OPTIONS),
        }
    data: dict[str, Any] = {"providers": providers}
    if info.get("ca_bundle"):
        data["ca_bundle"] = info["ca_bundle"]
    for key, value in (config or {}).items():
        if key == "providers":
            for name, overrides in value.items():
                providers.setdefault(name, {}).update(overrides)
        else:
            data[key] = value
    return Router.from_config(data, **kwargs)


def mount_farm(app: web.Application, scenario: str, overrides: Mapping[str, Any]) -> None:
    """Run the farm in ``app``'s lifetime (first in, last out) and serve through it.

    ``overrides`` (the config file's router tables) are laid over the farm's provider settings.
    """

    async def farm_ctx(app: web.Application) -> AsyncIterator[None]:
        async with Farm(scenario=scenario or "default") as farm:  # every plugin's provider API
            app[farm_key] = farm
            async with farm_router(farm, overrides) as router:
                app[router_key] = router
                yield

    app.cleanup_ctx.append(farm_ctx)
