"""``create_app``: the aiohttp application of the job API, every resource in a cleanup context.

Start order (cleanup runs in reverse): the mock farm (with ``farm``), the router and its HTTP
session, the job store and its connection thread, the event hub, authentication and rate
limits, output storage, the webhook delivery worker (:mod:`imagerouter.server.delivery`), the
Redis shared state (with ``state``: it shares the webhook sender's receiver pauses too), and
last the worker pool, so that on shutdown the pool stops (finishing or handing
back its jobs) while the store is still open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from typing import Any

from aiohttp import web

from imagerouter.auth import Authenticator
from imagerouter.config import Settings
from imagerouter.errors import ConfigError
from imagerouter.jobs.events import EventHub
from imagerouter.jobs.store import JobStore
from imagerouter.jobs.worker import WorkerPool
from imagerouter.router import Router
from imagerouter.server import delivery
from imagerouter.server.dashboard import setup_dashboard
from imagerouter.server.keys import (
    authenticator_key,
    deliveries_key,
    events_key,
    limiter_key,
    outputs_key,
    router_key,
    settings_key,
    state_key,
    store_key,
    workers_key,
)
from imagerouter.server.middlewares import api_middleware
from imagerouter.server.observability import setup_observability
from imagerouter.server.ratelimit import RateLimiter
from imagerouter.server.routes import setup_routes
from imagerouter.server.settings import ServerSettings

__all__ = ["create_app"]

#: The entry point group through which the farm's side mounts the farm (``serve --farm``).
FARM_ENTRY_POINTS = "imagerouter.farm"


def create_app(
    settings: ServerSettings,
    router_settings: Settings | None = None,
    *,
    router: Router | None = None,
    store: JobStore | None = None,
    router_overrides: dict[str, Any] | None = None,
) -> web.Application:
    """The job API app.

    Args:
        settings: the server's settings.
        router_settings: the core settings the router is built from (unless ``router`` or
            ``settings.farm`` is given).
        router: a router to use instead (the app enters and exits it).
        store: a store to use instead of SQLite under ``settings.data_dir`` (opened here).
        router_overrides: config laid over the farm's provider settings (with ``farm``).

    Raises MissingExtra, before anything starts, when the settings name a store, state,
    storage or farm whose extra is not installed.
    """
    settings.require_extras(farm=router is None)
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[settings_key] = settings
    if settings.farm is not None and router is None:
        _mount_farm()(app, settings.farm, router_overrides or {})
    else:
        app.cleanup_ctx.append(_router_ctx(router, router_settings))
    app.cleanup_ctx.append(_store_ctx(store))
    app.cleanup_ctx.append(_services_ctx)
    app.cleanup_ctx.append(delivery.storage_ctx)
    app.cleanup_ctx.append(delivery.webhooks_ctx)
    app.on_shutdown.append(delivery.close_streams)
    app.cleanup_ctx.append(_state_ctx)  # after the webhook sender: it shares receivers' pauses
    app.cleanup_ctx.append(_journal_ctx)  # before the workers: no job runs into a kept window
    app.cleanup_ctx.append(_workers_ctx)
    setup_routes(app)
    setup_observability(app)
    setup_dashboard(app)
    return app


def _mount_farm() -> Callable[[web.Application, str, dict[str, Any]], None]:
    """The farm's ``mount_farm``, found by entry point: the core never imports the farm."""
    for entry_point in entry_points(group=FARM_ENTRY_POINTS, name="mount"):
        return entry_point.load()
    raise ConfigError(
        "the mock farm is not installed: pip install 'imagerouter-framework[farm]'",
        field="server.farm",
    )


def _router_ctx(router: Router | None, router_settings: Settings | None):
    async def router_ctx(app: web.Application) -> AsyncIterator[None]:
        built = router or Router.from_config(router_settings)
        async with built:
            app[router_key] = built
            yield

    return router_ctx


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    """With ``settings.state`` (``redis://…``): share the router's breakers, cooldowns and
    budgets, and the webhook receivers' pauses and limits, with every replica on the same
    Redis prefix (:class:`~imagerouter.replication.RedisState`); while Redis is away, the
    windows go to the replicas through the job store they share."""
    settings = app[settings_key]
    if settings.state is None:
        yield
        return
    from imagerouter.replication import RedisState

    deliveries = app.get(deliveries_key)
    async with RedisState(
        settings.state,
        app[router_key],
        prefix=settings.state_prefix,
        receivers=None if deliveries is None else deliveries.sender.targets,
        store=app[store_key],
    ) as state:
        app[state_key] = state
        yield


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep the windows this server is given (Retry-After cooldowns, receivers' pauses) in the
    job store, and apply those an earlier process kept that still run
    (:class:`~imagerouter.replication.journal.WindowJournal`)."""
    from imagerouter.replication.journal import WindowJournal

    deliveries = app.get(deliveries_key)
    async with WindowJournal(
        app[router_key],
        app[store_key],
        receivers=None if deliveries is None else deliveries.sender.targets,
    ):
        yield


def _store_ctx(store: JobStore | None):
    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        async with store or settings.job_store() as opened:
            app[store_key] = opened
            yield

    return store_ctx


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    """The event hub, the authenticator and the rate limiter (shared through Redis when
    ``settings.state`` names one)."""
    settings = app[settings_key]
    hub = EventHub()
    hub.attach(app[store_key])
    app[events_key] = hub
    authenticator = Authenticator(app[store_key], cache_s=settings.auth_cache_s)
    authenticator.watch()  # revocations by other replicas and the CLI
    app[authenticator_key] = authenticator
    if settings.state is None:
        app[limiter_key] = RateLimiter(settings.rate_limits)
        yield
    else:  # one bucket per API key for the whole fleet, local buckets if Redis blinks
        from imagerouter.replication import RedisRateLimiter

        async with RedisRateLimiter(
            settings.state, settings.rate_limits, prefix=settings.state_prefix
        ) as limiter:
            app[limiter_key] = limiter
            yield
    authenticator.close()
    hub.close()


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker pool: started last, stopped first (finishing or handing back its jobs)."""
    pool = WorkerPool(
        app[store_key],
        app[router_key],
        app[settings_key].worker_config(),
        outputs=app.get(outputs_key),
    )
    app[workers_key] = pool
    async with pool:
        # Jobs queued by other replicas (a shared store) wake this pool too.
        unsubscribe = app[store_key].subscribe(
            lambda events: any(e.type == "job.queued" for e in events) and pool.wake()
        )
        try:
            yield
        finally:
            unsubscribe()
