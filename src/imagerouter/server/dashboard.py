"""The live dashboard: ``GET /dashboard`` (static HTML, JS and CSS) fed by an admin SSE stream.

Data flow: the router's attempt listener and the store's job events feed :class:`LiveStats`
(per provider, one-second buckets over the last minute; the newest jobs with their attempts).
``GET /v1/admin/stream`` sends one JSON snapshot (:func:`snapshot`) every
:data:`SNAPSHOT_INTERVAL_S`, built at most once per interval however many pages watch; the page
keeps only the newest and updates its existing nodes in a ``requestAnimationFrame``.

Admin routes (in the route table with tag ``admin``; no API key) need the ``admin_key``
setting, sent as ``Authorization: Bearer <admin_key>`` or as the session cookie that
``POST /v1/admin/session`` sets (EventSource cannot send headers). The cookie holds an expiry
and an HMAC of it keyed by the admin key, never the key itself; it is ``HttpOnly`` and
``SameSite=Strict``.

* ``POST /v1/admin/session`` / ``DELETE /v1/admin/session``: set / clear the cookie.
* ``GET /v1/admin/snapshot``: one snapshot, as JSON. ``GET /v1/admin/stream``: snapshots, SSE.
* ``GET /v1/admin/farm``: the in-process farm's ``/_farm/providers`` (404 without ``--farm``).
* ``PUT /v1/admin/farm/providers/{name}/faults``: proxied to the farm's control API.

One feature (over 400 lines): the dashboard's live stats, snapshots, admin session and views.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp_sse import sse_response

from imagerouter.generation import AttemptEvent
from imagerouter.jobs.types import JobEvent
from imagerouter.logs import current_job_id
from imagerouter.server.errors import ApiError
from imagerouter.server.http import read_json
from imagerouter.server.info_views import shared_state
from imagerouter.server.keys import (
    FarmHandle,
    deliveries_key,
    farm_key,
    live_key,
    router_key,
    settings_key,
    snapshots_key,
    store_key,
    workers_key,
)
from imagerouter.server.urls import base_url

__all__ = ["LiveStats", "setup_dashboard", "snapshot"]

STATIC_DIR = Path(__file__).parent / "static"
WINDOW_S = 60
SNAPSHOT_INTERVAL_S = 0.4
RECENT_JOBS = 40
JOBS_SHOWN = 12
#: Webhook receivers shown: those with the most webhooks waiting, then in flight.
RECEIVERS_SHOWN = 8
ATTEMPTS_KEPT = 12
COOKIE = "imagerouter_admin"
SESSION_S = 12 * 3600
#: Latency histogram bounds (seconds): 1 ms to ~6 min in steps of 15 %.
_BOUNDS = tuple(0.001 * 1.15**i for i in range(92))
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


# --------------------------------------------------------------------------- live state


class _Second:
    __slots__ = ("errors", "hist", "ok", "second")

    def __init__(self, second: int) -> None:
        self.second, self.ok, self.errors = second, 0, 0
        self.hist: dict[int, int] = {}


class ProviderWindow:
    """One provider's calls over the last :data:`WINDOW_S` seconds, in one-second buckets."""

    __slots__ = ("_ring",)

    def __init__(self) -> None:
        self._ring: list[_Second | None] = [None] * WINDOW_S

    def _bucket(self, second: int) -> _Second:
        slot = self._ring[second % WINDOW_S]
        if slot is None or slot.second != second:
            slot = self._ring[second % WINDOW_S] = _Second(second)
        return slot

    def add(self, now: float, ok: bool, latency_s: float | None) -> None:
        """Count one call that was made (ok or error) at monotonic time ``now``."""
        bucket = self._bucket(math.floor(now))
        if ok:
            bucket.ok += 1
        else:
            bucket.errors += 1
        if latency_s is not None:
            index = min(len(_BOUNDS) - 1, _bound_index(latency_s))
            bucket.hist[index] = bucket.hist.get(index, 0) + 1

    def _live(self, now: float) -> list[_Second]:
        oldest = math.floor(now) - WINDOW_S
        return [s for s in self._ring if s is not None and s.second > oldest]

    def summary(self, now: float) -> dict[str, Any]:
        """Calls, success rate and p95 latency (ms, to within 15 %) over the last minute."""
        ok = errors = 0
        hist: dict[int, int] = {}
        for second in self._live(now):
            ok += second.ok
            errors += second.errors
            for index, count in second.hist.items():
                hist[index] = hist.get(index, 0) + count
        calls = ok + errors
        return {
            "calls": calls,
            "ok": ok,
            "errors": errors,
            "success_rate": ok / calls if calls else None,
            "p95_ms": _quantile_ms(hist, 0.95),
        }

    def series(self, now: float) -> list[int]:
        """Successful calls in each of the last :data:`WINDOW_S` whole seconds, oldest first."""
        last = math.floor(now) - 1
        counts = [0] * WINDOW_S
        for second in self._live(now):
            age = last - second.second
            if 0 <= age < WINDOW_S:
                counts[WINDOW_S - 1 - age] = second.ok
        return counts


def _bound_index(latency_s: float) -> int:
    if latency_s <= _BOUNDS[0]:
        return 0
    return max(0, math.ceil(math.log(latency_s / _BOUNDS[0]) / math.log(1.15)))


def _quantile_ms(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return round(_BOUNDS[index] * 1000, 1)
    return None  # pragma: no cover


class LiveStats:
    """What the dashboard shows that the router does not keep: recent rates and jobs."""

    def __init__(self) -> None:
        self.providers: dict[str, ProviderWindow] = {}
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.totals = {"submitted": 0, "completed": 0, "failed": 0, "canceled": 0}

    def _job(self, job_id: str) -> dict[str, Any]:
        entry = self.jobs.get(job_id)
        if entry is None:
            entry = self.jobs[job_id] = {
                "id": job_id,
                "status": "queued",
                "model": None,
                "provider": None,
                "created_at": None,
                "duration_ms": None,
                "error_code": None,
                "attempts": [],
            }
            while len(self.jobs) > RECENT_JOBS:
                self.jobs.popitem(last=False)
        return entry

    def observe_attempt(self, event: AttemptEvent) -> None:
        """Router listener: count calls per provider; note the attempt on its job."""
        attempt = event.attempt
        if attempt.outcome in ("ok", "error"):
            window = self.providers.get(attempt.provider)
            if window is None:
                window = self.providers[attempt.provider] = ProviderWindow()
            latency = None if attempt.latency_ms is None else attempt.latency_ms / 1000
            window.add(time.monotonic(), attempt.outcome == "ok", latency)
        job_id = current_job_id()
        if job_id is None:
            return
        entry = self._job(job_id)
        entry["model"] = event.model
        attempts = entry["attempts"]
        if len(attempts) < ATTEMPTS_KEPT:
            attempts.append(
                {
                    "provider": attempt.provider,
                    "outcome": attempt.outcome,
                    "latency_ms": None if attempt.latency_ms is None else round(attempt.latency_ms),
                    "error_class": attempt.error_class,
                    "status": attempt.status,
                    "reason": None if attempt.outcome != "skipped" else attempt.reason,
                }
            )

    def observe_job_events(self, events: Sequence[JobEvent]) -> None:
        """Store listener: the newest jobs' states, and totals since start."""
        for event in events:
            status = event.data.get("status")
            if status == "queued" and event.data.get("reason") is None:
                self.totals["submitted"] += 1
                self._job(event.job_id)["created_at"] = event.created_at
                continue
            if status not in ("processing", "completed", "failed", "canceled", "queued"):
                continue
            entry = self._job(event.job_id)
            entry["status"] = status
            if status in ("completed", "failed", "canceled"):
                self.totals[status] += 1
                entry["provider"] = event.data.get("provider")
                error = event.data.get("error")
                entry["error_code"] = error.get("code") if isinstance(error, dict) else None
                if entry["created_at"] is not None:
                    entry["duration_ms"] = round((event.created_at - entry["created_at"]) * 1000)


# --------------------------------------------------------------------------- snapshots


def _pace_per_s(entry: dict[str, Any]) -> float | None:
    """The calls a second a key is paced at by its 429s (None: not paced)."""
    pace = entry.get("pace")
    return None if pace is None else round(pace["rate_per_s"], 2)


def snapshot(app: web.Application) -> dict[str, Any]:
    """Everything the dashboard shows, as one JSON-ready dict (no prompts, no keys)."""
    live = app[live_key]
    router = app[router_key]
    now, mono = router.clock.now(), time.monotonic()
    providers = []
    for entry in router.provider_status():
        name = entry["name"]
        instance = router.instances[name]
        next_probe = instance.breaker.next_probe_at
        window = live.providers.get(name) or ProviderWindow()
        series = window.series(mono)
        breaker = entry["breaker"]
        concurrency = entry["concurrency"] or {}
        providers.append(
            {
                "name": name,
                "plugin": entry["plugin"],
                "breaker": breaker["state"],
                "next_probe_in_s": None if next_probe is None else max(0.0, next_probe - now),
                "trips": breaker["total_trips"],
                "failure_rate": breaker["failure_rate"],
                "health": round(entry["health"]["score"], 4),
                "cooldown_s": max(0.0, entry["cooldown_remaining_s"] or 0.0),
                "pace_per_s": _pace_per_s(entry),
                "in_flight": concurrency.get("in_flight"),
                "limit": concurrency.get("limit"),
                "spend": entry.get("spend"),
                "window": window.summary(mono),
                "rate": round(sum(series[-5:]) / 5, 2),
                "series": series,
            }
        )
    pool = app.get(workers_key)
    jobs = list(live.jobs.values())[-JOBS_SHOWN:]
    jobs.reverse()
    return {
        "type": "snapshot",
        "server_time": time.time(),
        "interval_s": SNAPSHOT_INTERVAL_S,
        "window_s": WINDOW_S,
        "providers": providers,
        "workers": None if pool is None else {"running": pool.running, "size": pool.config.workers},
        "retry_budget_available": {
            name: instance.retry_budget.available() for name, instance in router.instances.items()
        },
        "totals": dict(live.totals),
        "jobs": jobs,
        "webhooks": _webhooks_summary(app),
        "farm": _farm_summary(app),
        "shared_state": shared_state(app),
    }


def _webhooks_summary(app: web.Application) -> dict[str, Any] | None:
    """Webhook attempts running now, the deliveries given back unsent (by why), the
    busiest receivers (named by origin, never by their URL's path or query) and how many
    replicas share each one's limits, or None when the store keeps no deliveries."""
    worker = app.get(deliveries_key)
    if worker is None:
        return None
    return {
        "in_flight": worker.inflight,
        "slow": worker.slow,
        "deferred": dict(worker.deferred),
        "receivers": worker.sender.targets.summary(),
        "busiest": worker.sender.busiest_receivers(RECEIVERS_SHOWN),
        "senders": worker.sender.targets.senders,
    }


def _farm(app: web.Application) -> FarmHandle | None:
    return app.get(farm_key)


def _farm_summary(app: web.Application) -> dict[str, Any] | None:
    farm = _farm(app)
    if farm is None:
        return None
    providers = {}
    for name, entry in farm.providers()["providers"].items():
        effective = entry.get("effective") or {}
        providers[name] = {
            "down": bool(effective.get("down")),
            "error_rates": {k: v for k, v in (effective.get("error_rates") or {}).items() if v},
            "faults": entry.get("faults") or {},
        }
    return {"providers": providers}


class _Snapshots:
    """The newest snapshot as JSON text, rebuilt at most once per interval."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._text = ""
        self._at = -math.inf
        self.stopping = asyncio.Event()

    def current(self) -> str:
        mono = time.monotonic()
        if mono - self._at >= SNAPSHOT_INTERVAL_S * 0.9:
            self._text = json.dumps(snapshot(self._app), separators=(",", ":"))
            self._at = mono
        return self._text


# --------------------------------------------------------------------------- admin auth


def _admin_key(request: web.Request) -> bytes:
    secret = request.app[settings_key].admin_key
    if secret is None or not secret.get_secret_value():
        raise ApiError(
            403,
            "admin_disabled",
            "admin routes are off: set [server] admin_key (or IMAGEROUTER_SERVER_ADMIN_KEY)",
        )
    return secret.get_secret_value().encode()


def _session_value(key: bytes, expires: int) -> str:
    mac = hmac.new(key, f"imagerouter-admin-session.{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_admin(request: web.Request) -> None:
    """Pass with the admin key as a bearer token or a valid session cookie; 401 otherwise."""
    key = _admin_key(request)
    token = _bearer(request)
    if token is not None and hmac.compare_digest(token.encode(), key):
        return
    cookie = request.cookies.get(COOKIE, "")
    expires, _, _ = cookie.partition(".")
    if (
        expires.isdigit()
        and int(expires) > time.time()
        and hmac.compare_digest(cookie.encode(), _session_value(key, int(expires)).encode())
    ):
        return
    raise ApiError(
        401,
        "admin_key_required",
        "send the admin key as 'Authorization: Bearer <admin_key>' "
        "or sign in with POST /v1/admin/session",
        headers={"WWW-Authenticate": 'Bearer realm="imagerouter-admin"'},
    )


async def create_session(request: web.Request) -> web.Response:
    """``POST /v1/admin/session`` with the admin key as bearer token: sets the session cookie."""
    key = _admin_key(request)
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), key):
        raise ApiError(401, "admin_key_required", "wrong or missing admin key")
    expires = int(time.time()) + SESSION_S
    response = web.json_response({"expires_at": expires})
    response.set_cookie(
        COOKIE,
        _session_value(key, expires),
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="Strict",
        # HTTPS as the browser sees it: a TLS-terminating trusted proxy or an https public_url
        # counts, where request.secure sees only this server's own socket
        secure=request.secure or base_url(request).startswith("https://"),
    )
    return response


async def delete_session(request: web.Request) -> web.Response:
    """``DELETE /v1/admin/session``: forget the cookie."""
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- views


async def dashboard_page(request: web.Request) -> web.FileResponse:
    """``GET /dashboard``: the page (it asks for the admin key itself)."""
    return web.FileResponse(
        STATIC_DIR / "dashboard.html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP},
    )


async def snapshot_view(request: web.Request) -> web.Response:
    """``GET /v1/admin/snapshot``: what the stream sends, once."""
    require_admin(request)
    text = request.app[snapshots_key].current()
    return web.Response(text=text, content_type="application/json")


async def stream_view(request: web.Request) -> web.StreamResponse:
    """``GET /v1/admin/stream``: a snapshot every interval, as server-sent events."""
    require_admin(request)
    snapshots = request.app[snapshots_key]
    async with sse_response(request, send_timeout=10, ping_interval=15) as events:
        await events.send(snapshots.current(), event="snapshot", retry=2000)
        while events.is_connected() and not snapshots.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(snapshots.stopping.wait(), SNAPSHOT_INTERVAL_S)
            if snapshots.stopping.is_set():
                break
            try:
                await events.send(snapshots.current(), event="snapshot")
            except (ConnectionResetError, TimeoutError):
                break
    return events


async def farm_view(request: web.Request) -> web.Response:
    """``GET /v1/admin/farm``: the in-process farm's providers and fault profiles."""
    require_admin(request)
    farm = _farm(request.app)
    if farm is None:
        raise ApiError(404, "no_farm", "no farm runs in this process (start with serve --farm)")
    return web.json_response(farm.providers())


async def farm_faults_view(request: web.Request) -> web.Response:
    """``PUT /v1/admin/farm/providers/{name}/faults``: through to the farm's control API."""
    require_admin(request)
    farm = _farm(request.app)
    if farm is None:
        raise ApiError(404, "no_farm", "no farm runs in this process (start with serve --farm)")
    await read_json(request)  # the one JSON reader's checks, before the farm sees the body
    body = await request.read()
    name = quote(request.match_info["name"], safe="")
    session = request.app[router_key].session
    async with session.put(
        f"{farm.url}/_farm/providers/{name}/faults",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as answer:
        return web.Response(
            body=await answer.read(), status=answer.status, content_type="application/json"
        )


# --------------------------------------------------------------------------- wiring


async def _dashboard_ctx(app: web.Application) -> AsyncIterator[None]:
    live = app[live_key]
    router = app[router_key]
    router.attempts.add(live.observe_attempt)
    unsubscribe = app[store_key].subscribe(live.observe_job_events)
    try:
        yield
    finally:
        unsubscribe()
        router.attempts.remove(live.observe_attempt)


async def _stop_streams(app: web.Application) -> None:
    app[snapshots_key].stopping.set()


def setup_dashboard(app: web.Application) -> None:
    """The dashboard's live state and its static files; its page and the admin routes are in
    :data:`~imagerouter.server.routes.ROUTES`."""
    app[live_key] = LiveStats()
    app[snapshots_key] = _Snapshots(app)
    app.cleanup_ctx.append(_dashboard_ctx)
    app.on_shutdown.append(_stop_streams)
    app.router.add_static("/dashboard/static/", STATIC_DIR, name="dashboard.static")
