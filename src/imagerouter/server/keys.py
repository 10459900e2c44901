"""Every typed ``web.AppKey`` of the server app, in one place; handlers only read them."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from imagerouter.auth import Authenticator, Principal
from imagerouter.jobs.events import EventHub
from imagerouter.jobs.store import JobStore
from imagerouter.jobs.worker import WorkerPool
from imagerouter.router import Router
from imagerouter.server.settings import ServerSettings

__all__ = [
    "FarmHandle",
    "authenticator_key",
    "events_key",
    "farm_key",
    "limiter_key",
    "principal_key",
    "router_key",
    "settings_key",
    "state_key",
    "store_key",
    "workers_key",
]

settings_key = web.AppKey("settings", ServerSettings)
router_key = web.AppKey("router", Router)
store_key = web.AppKey("store", JobStore)  # type: ignore[type-abstract]
events_key = web.AppKey("events", EventHub)
workers_key = web.AppKey("workers", WorkerPool)
authenticator_key = web.AppKey("authenticator", Authenticator)
limiter_key = web.AppKey("limiter", object)  # RateLimiter, or the fleet's RedisRateLimiter
#: The Redis-shared resilience state, when ``ServerSettings.state`` names one.
state_key = web.AppKey("state", object)


class FarmHandle(Protocol):
    """What the server needs of an in-process mock farm (the dashboard's farm panel): its URL
    and its providers document. The farm's side sets it; the core never imports the farm."""

    url: str

    def providers(self) -> dict[str, Any]:
        """``GET /_farm/providers``."""
        ...


#: The in-process mock farm, when the app runs one (``serve --farm``).
farm_key = web.AppKey("farm", FarmHandle)  # type: ignore[type-abstract]

#: Set on each authenticated request by the auth middleware.
principal_key = web.RequestKey("principal", Principal)
