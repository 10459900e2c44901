"""Every route in one table: method, path, handler, auth, rate-limit policy, body and answers.

The same table registers the routes, tells the auth middleware what each route needs, and
generates the OpenAPI document, so the three cannot drift apart.

One table (over 400 lines): every route of the API, so that nothing registers a route outside it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from imagerouter.generation import ImageRequest
from imagerouter.jobs.types import JOB_STATUSES
from imagerouter.server import (
    admin_views,
    dashboard,
    events_views,
    info_views,
    jobs_views,
    media_views,
    openai_videos,
    openai_views,
    webhook_views,
)
from imagerouter.server.keys import routes_key
from imagerouter.server.schemas import (
    AccountOut,
    CompatAccepted,
    DeliveryList,
    DeliveryOut,
    EventList,
    HealthOut,
    JobAccepted,
    JobList,
    JobOut,
    ModelList,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    ProviderList,
    ReadyOut,
    RotateSecretIn,
    WebhookIn,
    WebhookOut,
)

__all__ = ["INTERNAL_TAGS", "ROUTES", "Param", "RouteSpec", "route_spec", "setup_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


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
    statuses the route can answer; ``openai`` marks routes that answer errors in OpenAI's shape;
    ``media_type`` is the success answer's content type (text, when not JSON);
    ``headers`` names response headers (name → description) its answers may carry; ``head``
    also answers ``HEAD`` (a GET whose body is left out: what CDNs and link checkers send).
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
    media_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    head: bool = False

    @property
    def query_names(self) -> frozenset[str]:
        """The query parameters the route reads (any other is refused)."""
        return frozenset(p.name for p in self.params if p.location == "query")

    @property
    def doc_path(self) -> str:
        """The path as OpenAPI writes it: aiohttp's ``{name:regex}`` as ``{name}``."""
        return _PATTERN.sub(r"{\1}", self.path)


_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255},
    description="Retries with the same key and body return the first answer; kept 24 h.",
)
_JOB_ID = Param("id", "path", {"type": "string", "minLength": 1}, required=True)
#: A video's path: an empty or dot id still reaches the route (a 404 in OpenAI's shape).
_VIDEO_PATH = "/v1/videos/{id:[^/]*}"
_SUBMIT_ERRORS = (400, 401, 402, 409, 413, 422, 429)
_LAST_EVENT_ID = Param(
    "Last-Event-ID",
    "header",
    {"type": "string", "pattern": "^[0-9]{1,18}$"},
    description="Resume after this event id (as an SSE client does on reconnect).",
)
_AFTER = Param(
    "after",
    "query",
    {"type": "integer", "minimum": 0},
    description="Events after this id (Last-Event-ID wins).",
)
_EVENT_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500})
#: Tags of the routes beside the public API: the dashboard and admin routes (the admin key,
#: checked by the handlers, instead of an API key) and the metrics (no key). Not rate limited,
#: and not timed in the request metrics.
INTERNAL_TAGS = frozenset({"admin", "observability"})
_ADMIN_ERRORS = (401, 403)
_STREAM_NOTE = (
    " With 'Accept: text/event-stream': Server-Sent Events (id = event id, event = type), "
    "resumable with Last-Event-ID; otherwise one JSON page."
)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST",
        "/v1/jobs",
        jobs_views.submit_job,
        "jobs.submit",
        "Submit an image job; it is charged and queued (202). Optional `routing` "
        "preferences (only, ignore, order, sort, allow_fallbacks, max_price_credits, "
        "max_cost_usd) are checked before the charge: 422 naming the field.",
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
        "GET",
        "/v1/jobs/{id}/events",
        events_views.job_events,
        "jobs.events",
        "The job's events: queued, processing, then completed, failed or canceled; the "
        "stream ends after the final one." + _STREAM_NOTE,
        "events",
        ok=(200, EventList),
        errors=(400, 401, 404, 422, 429),
        params=(_JOB_ID, _LAST_EVENT_ID, _AFTER, _EVENT_LIMIT),
    ),
    RouteSpec(
        "GET",
        "/v1/events",
        events_views.account_events,
        "events.list",
        "Every event of your jobs; the stream starts now unless resuming." + _STREAM_NOTE,
        "events",
        ok=(200, EventList),
        errors=(400, 401, 422, 429),
        params=(_LAST_EVENT_ID, _AFTER, _EVENT_LIMIT),
    ),
    RouteSpec(
        "GET",
        "/v1/jobs/{id}/deliveries",
        webhook_views.job_deliveries,
        "jobs.deliveries",
        "The job's webhook deliveries: every attempt's time, status, latency and error.",
        "webhooks",
        ok=(200, DeliveryList),
        errors=(401, 404, 429),
        params=(_JOB_ID,),
    ),
    RouteSpec(
        "POST",
        "/v1/jobs/{id}/deliveries/replay",
        webhook_views.replay_delivery,
        "jobs.deliveries.replay",
        "Send the job's webhook again, with the same webhook-id and body (202).",
        "webhooks",
        ok=(202, DeliveryOut),
        errors=(401, 404, 409, 429),
        params=(_JOB_ID,),
    ),
    RouteSpec(
        "GET",
        "/v1/webhook",
        webhook_views.get_webhook,
        "webhook.get",
        "Your webhook URL, whether it is enabled, and its signing secrets (without values).",
        "webhooks",
        ok=(200, WebhookOut),
        errors=(401, 429),
    ),
    RouteSpec(
        "PUT",
        "/v1/webhook",
        webhook_views.put_webhook,
        "webhook.put",
        "Register your webhook URL (SSRF-checked); the first signing secret is shown once.",
        "webhooks",
        ok=(200, WebhookOut),
        body=WebhookIn,
        errors=(400, 401, 413, 422, 429),
    ),
    RouteSpec(
        "DELETE",
        "/v1/webhook",
        webhook_views.delete_webhook,
        "webhook.delete",
        "Unregister your webhook URL (secrets stay, for per-job webhook_url).",
        "webhooks",
        ok=(200, WebhookOut),
        errors=(401, 429),
    ),
    RouteSpec(
        "POST",
        "/v1/webhook/secret/rotate",
        webhook_views.rotate_secret,
        "webhook.secret.rotate",
        "A new signing secret, shown once; the old one keeps signing through a grace period.",
        "webhooks",
        ok=(200, WebhookOut),
        body=RotateSecretIn,
        errors=(400, 401, 413, 422, 429),
    ),
    RouteSpec(
        "GET",
        "/v1/media/{key:.+}",
        media_views.media,
        "media.get",
        "A stored image (local storage), by the signed, expiring URL in a job's result.",
        "media",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=(403, 404),
        params=(
            Param(
                "key",
                "path",
                {"type": "string", "minLength": 1},
                required=True,
                description="The stored file's key, slashes included (as in the signed URL).",
            ),
            Param("expires", "query", {"type": "string"}, required=True),
            Param("sig", "query", {"type": "string"}, required=True),
        ),
        head=True,
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
        "OpenAI-compatible image generation: runs the job and answers when it is done, "
        "per model family as OpenAI does (GPT image models: b64_json and usage; DALL·E: url "
        "or b64_json); image URLs are absolute. Extension: a top-level `routing` object "
        "(the SDK's extra_body) as on POST /v1/jobs.",
        "openai",
        ok=(200, OpenAIImagesResponse),
        limit="generate",
        body=OpenAIImageRequest,
        errors=(400, 401, 409, 413, 422, 429, 502, 503, 504),
        params=(_IDEMPOTENCY,),
        openai=True,
        headers=(
            (
                openai_views.JOB_ID_HEADER,
                "The job this answer is about, on every answer once a job was created "
                "(success, failure or timeout): GET /v1/jobs/{id} finds it.",
            ),
        ),
    ),
    RouteSpec(
        "POST",
        "/v1/videos",
        openai_videos.create_video,
        "openai.videos.create",
        "OpenAI-compatible video create (the SDK's multipart form, or JSON): charges and "
        "queues a video job of a catalog video model; answers the Video object, queued. "
        "Extensions: resolution, aspect_ratio, generate_audio, seed, webhook_url, metadata.",
        "openai",
        ok=(200, None),
        limit="generate",
        body=openai_videos.OpenAIVideoRequest,
        errors=(400, 401, 409, 413, 422, 429),
        params=(_IDEMPOTENCY,),
        openai=True,
    ),
    RouteSpec(
        "GET",
        "/v1/videos",
        openai_videos.list_videos,
        "openai.videos.list",
        "OpenAI-compatible: the caller's videos, newest first (after, limit).",
        "openai",
        ok=(200, None),
        errors=(400, 401, 429),
        params=(
            Param(
                "after",
                "query",
                {"type": "string", "minLength": 1},
                description="A video id of the caller's: the videos older than it.",
            ),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("order", "query", {"type": "string", "enum": ["desc"]}),
        ),
        openai=True,
    ),
    RouteSpec(
        "GET",
        _VIDEO_PATH,
        openai_videos.retrieve_video,
        "openai.videos.retrieve",
        "OpenAI-compatible: one Video object (status, progress, seconds, size, error).",
        "openai",
        ok=(200, None),
        errors=(401, 404, 429),
        params=(_JOB_ID,),
        openai=True,
    ),
    RouteSpec(
        "DELETE",
        _VIDEO_PATH,
        openai_videos.delete_video,
        "openai.videos.delete",
        "OpenAI-compatible: cancel a queued or running video (refunded); 409 once finished.",
        "openai",
        ok=(200, None),
        errors=(401, 404, 409, 429),
        params=(_JOB_ID,),
        openai=True,
    ),
    RouteSpec(
        "GET",
        _VIDEO_PATH + "/content",
        openai_videos.video_content,
        "openai.videos.content",
        "OpenAI-compatible: the MP4 (from local storage; else a redirect to its URL).",
        "openai",
        ok=(200, None),
        errors=(400, 401, 404, 409, 429),
        params=(
            _JOB_ID,
            Param("variant", "query", {"type": "string", "enum": ["video"]}),
        ),
        openai=True,
        media_type="video/mp4",
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
            Param(
                "cursor",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 2**62},
                description="The last page's next_cursor: the entries older than it.",
            ),
            Param(
                "before",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 2**62},
                description="cursor's older name, still read (not with cursor).",
            ),
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
        head=True,  # load balancers' health checks may send HEAD
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
        head=True,
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
    RouteSpec(
        "GET",
        "/metrics",
        info_views.metrics_view,
        "metrics",
        "Prometheus metrics (no key: nothing in them is secret).",
        "observability",
        ok=(200, None),
        auth=False,
        limit=None,
        media_type="text/plain",
    ),
    RouteSpec(
        "GET",
        "/dashboard",
        dashboard.dashboard_page,
        "dashboard",
        "The live dashboard page; it asks for the admin key itself.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        media_type="text/html",
    ),
    RouteSpec(
        "POST",
        "/v1/admin/session",
        dashboard.create_session,
        "admin.session.create",
        "With the admin key as bearer token: set the admin session cookie.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=_ADMIN_ERRORS,
    ),
    RouteSpec(
        "DELETE",
        "/v1/admin/session",
        dashboard.delete_session,
        "admin.session.delete",
        "Clear the admin session cookie.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
    ),
    RouteSpec(
        "GET",
        "/v1/admin/snapshot",
        dashboard.snapshot_view,
        "admin.snapshot",
        "Admin: one dashboard snapshot (providers, workers, recent jobs, farm).",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=_ADMIN_ERRORS,
    ),
    RouteSpec(
        "GET",
        "/v1/admin/stream",
        dashboard.stream_view,
        "admin.stream",
        "Admin: dashboard snapshots as Server-Sent Events, one per interval.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=_ADMIN_ERRORS,
        media_type="text/event-stream",
    ),
    RouteSpec(
        "GET",
        "/v1/admin/farm",
        dashboard.farm_view,
        "admin.farm",
        "Admin: the in-process farm's providers and fault profiles (404 without --farm).",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=(*_ADMIN_ERRORS, 404),
    ),
    RouteSpec(
        "PUT",
        "/v1/admin/farm/providers/{name}/faults",
        dashboard.farm_faults_view,
        "admin.farm.faults",
        "Admin: set a farm provider's fault profile (JSON), through to the farm's control API.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=(*_ADMIN_ERRORS, 404, 415),
        params=(Param("name", "path", {"type": "string", "minLength": 1}, required=True),),
    ),
    RouteSpec(
        "DELETE",
        "/v1/admin/keys/{key_id}",
        admin_views.revoke_key_view,
        "admin.keys.revoke",
        "Admin: revoke an API key; refused by this replica from the next request, by the "
        "others at once on PostgreSQL (NOTIFY) and within 0.25 s on SQLite.",
        "admin",
        ok=(200, None),
        auth=False,
        limit=None,
        errors=(*_ADMIN_ERRORS, 404),
        params=(Param("key_id", "path", {"type": "string", "minLength": 1}, required=True),),
    ),
)

_BY_NAME: Mapping[str, RouteSpec] = MappingProxyType({spec.name: spec for spec in ROUTES})


def route_spec(request: web.Request) -> RouteSpec | None:
    """The spec of the route ``request`` matched, or None (unknown path or method)."""
    name = request.match_info.route.name
    return _BY_NAME.get(name) if name else None


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES` (and keep the table for the OpenAPI view)."""
    app[routes_key] = ROUTES
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, spec.handler, name=spec.name)
        if spec.head:  # the same resource: HEAD finds the GET route's spec by its name
            app.router.add_route("HEAD", spec.path, spec.handler, name=spec.name)
