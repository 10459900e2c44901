"""Handlers of the read-only routes: models, providers, account, health, the OpenAPI document
and the metrics."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from imagerouter.metrics import CONTENT_TYPE
from imagerouter.server.errors import ApiError
from imagerouter.server.http import json_response, query_params, validate
from imagerouter.server.keys import (
    metrics_key,
    principal_key,
    router_key,
    routes_key,
    state_key,
    store_key,
    workers_key,
)
from imagerouter.server.openapi import openapi_document
from imagerouter.server.present import ledger_entry_out
from imagerouter.server.schemas import LedgerQuery

__all__ = [
    "account",
    "healthz",
    "list_models",
    "list_providers",
    "metrics_view",
    "openapi_json",
    "readyz",
    "shared_state",
]


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the catalog's models, their providers in order, and prices."""
    router = request.app[router_key]
    catalog = router.catalog
    aliases: dict[str, list[str]] = {}
    for alias, target in catalog.aliases.items():
        aliases.setdefault(target, []).append(alias)
    data = [
        {
            "id": name,
            "object": "model",
            "description": model.description,
            "policy": model.policy,
            "providers": [c.instance.name for c in router.candidates_for(model)],
            "aliases": sorted(aliases.get(name, [])),
            "kind": model.kind,
            **(
                {
                    "credits": model.credits.model_dump(),
                    "capabilities": model.capabilities.model_dump(mode="json"),
                }
                if model.credits is not None
                else {
                    "video_credits": model.video_credits.model_dump(mode="json")
                    if model.video_credits
                    else None,
                    "video": model.video.model_dump(mode="json") if model.video else None,
                }
            ),
        }
        for name, model in catalog.models.items()
    ]
    return json_response({"object": "list", "data": data})


def shared_state(app: web.Application) -> dict[str, Any]:
    """Where this replica's resilience state lives: ``local`` (no Redis configured), or
    ``redis`` with ``healthy`` False while Redis is down or hangs and the replica runs on its
    own state (``degraded_since``: when that began)."""
    state = app.get(state_key)
    if state is None:
        return {"backend": "local", "healthy": True}
    healthy = bool(getattr(state, "healthy", False))
    since = None if healthy else getattr(state, "status", dict)().get("since")
    return {"backend": "redis", "healthy": healthy, "degraded_since": since}


async def list_providers(request: web.Request) -> web.Response:
    """``GET /v1/providers``: each provider's health, breaker state and cooldown, and whether
    the state is shared right now (``shared_state``)."""
    return json_response(
        {
            "object": "list",
            "data": request.app[router_key].provider_status(),
            "shared_state": shared_state(request.app),
        }
    )


async def account(request: web.Request) -> web.Response:
    """``GET /v1/account``: the caller's balance and ledger, newest first."""
    query = validate(LedgerQuery, query_params(request))
    if query.cursor is not None and query.before is not None:
        reason = "give ?cursor= (or its older name ?before=), not both"
        raise ApiError(
            422,
            "validation_error",
            f"before: {reason}",
            field="before",
            extra={"errors": [{"field": "before", "reason": reason}]},
        )
    store = request.app[store_key]
    principal = request[principal_key]
    found = await store.get_account(principal.account_id)
    entries = await store.ledger(found.id, limit=query.limit + 1, before_id=query.older_than)
    more = len(entries) > query.limit
    entries = entries[: query.limit]
    return json_response(
        {
            "id": found.id,
            "object": "account",
            "name": found.name,
            "balance": found.balance,
            "ledger": [ledger_entry_out(entry) for entry in entries],
            "next_cursor": str(entries[-1].id) if more else None,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: the store answers and the worker pool takes jobs (503 otherwise); with
    Redis configured, ``checks.shared_state`` says whether it is in use (a replica without it
    stays ready: it routes on its own state)."""
    checks: dict[str, str] = {}
    try:
        await request.app[store_key].ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"error: {type(exc).__name__}"
    pool = request.app[workers_key]
    if pool.config.workers == 0:
        checks["workers"] = "disabled"
    else:
        checks["workers"] = "ok" if pool.accepting else "stopped"
    if request.app.get(state_key) is not None:  # informative: a replica serves without Redis
        shared = shared_state(request.app)["healthy"]
        checks["shared_state"] = "ok" if shared else "degraded: running on local state"
    ready = checks["store"] == "ok" and checks["workers"] in ("ok", "disabled")
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of every route."""
    return json_response(openapi_document(request.app[routes_key], request.app))


async def metrics_view(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition (no key: nothing in it is secret)."""
    body = request.app[metrics_key].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
