"""Every typed ``web.AppKey`` of the server app, in one place; handlers only read them.

Keys whose value type lives in a server module that itself reads keys from here (the
dashboard's, the delivery streams', the metrics') are typed by annotation only: the class is
imported under ``TYPE_CHECKING``, so that this module imports no other server module and no
import cycle forms. The annotation gives type checkers the same ``app[key]`` type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from imagerouter.auth import Authenticator, Principal
from imagerouter.jobs.events import EventHub
from imagerouter.jobs.store import JobStore
from imagerouter.jobs.worker import WorkerPool
from imagerouter.router import Router
from imagerouter.server.settings import ServerSettings
from imagerouter.storage import OutputStore, Storage
from imagerouter.webhooks import DeliveryWorker, UrlPolicy

if TYPE_CHECKING:
    from imagerouter.server.dashboard import LiveStats, _Snapshots
    from imagerouter.server.delivery import StreamRegistry
    from imagerouter.server.observability import ServerMetrics

__all__ = [
    "FarmHandle",
    "authenticator_key",
    "deliveries_key",
    "events_key",
    "farm_key",
    "json_body_key",
    "limiter_key",
    "live_key",
    "metrics_key",
    "outputs_key",
    "principal_key",
    "router_key",
    "routes_key",
    "settings_key",
    "snapshots_key",
    "state_key",
    "storage_key",
    "store_key",
    "streams_key",
    "url_policy_key",
    "workers_key",
]

settings_key = web.AppKey("settings", ServerSettings)
router_key = web.AppKey("router", Router)
#: The route table (``routes.ROUTES``), for the OpenAPI view: the document is made from it.
routes_key = web.AppKey("routes", tuple)
store_key = web.AppKey("store", JobStore)  # type: ignore[type-abstract]
events_key = web.AppKey("events", EventHub)
workers_key = web.AppKey("workers", WorkerPool)
authenticator_key = web.AppKey("authenticator", Authenticator)
limiter_key = web.AppKey("limiter", object)  # RateLimiter, or the fleet's RedisRateLimiter
#: The Redis-shared resilience state, when ``ServerSettings.state`` names one.
state_key = web.AppKey("state", object)

# --------------------------------------------------------------------------- delivery

#: The output storage backend (absent with ``storage.backend = "none"``).
storage_key = web.AppKey("storage", Storage)  # type: ignore[type-abstract]
#: Re-hosts finished images; handed to the worker pool.
outputs_key = web.AppKey("outputs", OutputStore)
#: The SSRF policy webhook URLs are checked against.
url_policy_key = web.AppKey("url_policy", UrlPolicy)
#: The webhook delivery worker.
deliveries_key = web.AppKey("deliveries", DeliveryWorker)
#: The open SSE streams (:class:`~imagerouter.server.delivery.StreamRegistry`).
streams_key: web.AppKey[StreamRegistry] = web.AppKey("streams")

# --------------------------------------------------------------------------- observability

#: The app's metrics (:class:`~imagerouter.server.observability.ServerMetrics`); set by
#: ``setup_observability`` when the app is created.
metrics_key: web.AppKey[ServerMetrics] = web.AppKey("metrics")
#: The dashboard's :class:`~imagerouter.server.dashboard.LiveStats`.
live_key: web.AppKey[LiveStats] = web.AppKey("dashboard_live")
#: The dashboard's newest snapshot, rebuilt at most once per interval.
snapshots_key: web.AppKey[_Snapshots] = web.AppKey("dashboard_snapshots")


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
#: The request's JSON body once read and checked (:func:`imagerouter.server.http.read_json`),
#: so a wrapper that peeks at it and the handler parse and walk it once.
json_body_key = web.RequestKey("json_body", object)
