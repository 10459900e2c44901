"""Every route in one table: method, path, handler, auth, rate-limit policy, body and answers.

The same table registers the routes, tells the auth middleware what each route needs, and
generates the OpenAPI document, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from imagerouter.jobs.types import JOB_STATUSES
from imagerouter.models import ImageRequest
from imagerouter.server import info_views, jobs_views, openai_views
from imagerouter.server.schemas import (
    AccountOut,
    CompatAccepted,
    HealthOut,
    JobAccepted,
    JobList,
    JobOut,
    ModelList,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    ProviderList,
    ReadyOut,
)

__all__ = ["ROUTES", "Param", "RouteSpec", "route_spec", "setup_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter, with its JSON schema."""

    name: str
    location: str
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route and everything said about it.

    ``limit`` names the rate-limit policy (None: not limited); ``errors`` lists the error
    statuses the route can answer; ``openai`` marks routes that answer errors in OpenAI's shape.
    """

    method: str
    path: str
    handler: Handler
    name: str
    summary: str
    tag: str
    ok: tuple[int, type[BaseModel] | None]
    auth: bool = True
    limit: str | None = "read"
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = field(default_factory=tuple)
    openai: bool = False


_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255},
    description="Retries with the same key and body return the first answer; kept 24 h.",
)
_JOB_ID = Param("id", "path", {"type": "string", "minLength": 1}, required=True)
_SUBMIT_ERRORS = (400, 401, 402, 409, 413, 422, 429)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST",
        "/v1/jobs",
        jobs_views.submit_job,
        "jobs.submit",
        "Submit an image job; it is charged and queued (202).",
        "jobs",
        ok=(202, JobAccepted),
        limit="generate",
        body=ImageRequest,
        errors=_SUBMIT_ERRORS,
        params=(_IDEMPOTENCY,),
    ),
    RouteSpec(
        "GET",
        "/v1/jobs",
        jobs_views.list_jobs,
        "jobs.list",
        "List your jobs, newest first, optionally by status.",
        "jobs",
        ok=(200, JobList),
        errors=(400, 401, 422, 429),
        params=(
            Param(
                "status",
                "query",
                {
                    "type": "string",
                    "enum": list(JOB_STATUSES),
                },
            ),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("cursor", "query", {"type": "string", "maxLength": 200}),
        ),
    ),
    RouteSpec(
        "GET",
        "/v1/jobs/{id}",
        jobs_views.get_job,
        "jobs.get",
        "A job: status, request, result, every attempt, credits.",
        "jobs",
        ok=(200, JobOut),
        errors=(401, 404, 429),
        params=(_JOB_ID,),
    ),
    RouteSpec(
        "DELETE",
        "/v1/jobs/{id}",
        jobs_views.cancel_job,
        "jobs.cancel",
        "Cancel a queued or running job; its price is refunded.",
        "jobs",
        ok=(200, JobOut),
        errors=(401, 404, 409, 429),
        params=(_JOB_ID,),
    ),
    RouteSpec(
        "POST",
        "/api/generate/image",
        jobs_views.compat_submit,
        "compat.generate",
        "Compatible submit: answers 202 {data: {jobId}}.",
        "compat",
        ok=(202, CompatAccepted),
        limit="generate",
        body=ImageRequest,
        errors=_SUBMIT_ERRORS,
        params=(_IDEMPOTENCY,),
    ),
    RouteSpec(
        "POST",
        "/v1/images/generations",
        openai_views.images_generations,
        "openai.images",
        "OpenAI-compatible image generation: runs the job and answers when it is done.",
        "openai",
        ok=(200, OpenAIImagesResponse),
        limit="generate",
        body=OpenAIImageRequest,
        errors=(400, 401, 409, 413, 422, 429, 503, 504),
        params=(_IDEMPOTENCY,),
        openai=True,
    ),
    RouteSpec(
        "GET",
        "/v1/models",
        info_views.list_models,
        "models.list",
        "The catalog's models, providers in routing order, prices in credits.",
        "catalog",
        ok=(200, ModelList),
        errors=(401, 429),
    ),
    RouteSpec(
        "GET",
        "/v1/providers",
        info_views.list_providers,
        "providers.list",
        "Each provider's health score, breaker state and cooldown.",
        "catalog",
        ok=(200, ProviderList),
        errors=(401, 429),
    ),
    RouteSpec(
        "GET",
        "/v1/account",
        info_views.account,
        "account.get",
        "Your balance and credit ledger, newest first.",
        "account",
        ok=(200, AccountOut),
        errors=(401, 422, 429),
        params=(
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            Param("before", "query", {"type": "integer", "minimum": 1}),
        ),
    ),
    RouteSpec(
        "GET",
        "/healthz",
        info_views.healthz,
        "health.live",
        "Liveness.",
        "health",
        ok=(200, HealthOut),
        auth=False,
        limit=None,
    ),
    RouteSpec(
        "GET",
        "/readyz",
        info_views.readyz,
        "health.ready",
        "Readiness: the store answers and workers take jobs.",
        "health",
        ok=(200, ReadyOut),
        auth=False,
        limit=None,
        errors=(503,),
    ),
    RouteSpec(
        "GET",
        "/openapi.json",
        info_views.openapi_json,
        "openapi",
        "This document.",
        "health",
        ok=(200, None),
        auth=False,
        limit=None,
    ),
)

_BY_NAME: Mapping[str, RouteSpec] = MappingProxyType({spec.name: spec for spec in ROUTES})


def route_spec(request: web.Request) -> RouteSpec | None:
    """The spec of the route ``request`` matched, or None (unknown path or method)."""
    name = request.match_info.route.name
    return _BY_NAME.get(name) if name else None


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES`."""
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, spec.handler, name=spec.name)
