"""Live job events: ``GET /v1/jobs/{id}/events`` and ``GET /v1/events``.

Asked with ``Accept: text/event-stream`` they answer Server-Sent Events (``aiohttp-sse``):
one SSE event per job transition, ``id`` the store's event id, ``event`` its type
(``job.queued``, ``job.processing``, ``job.progress`` while a provider's queue holds the job,
``job.completed``…) and ``data`` the event as JSON.
Otherwise they answer a JSON page of the same events (for polling clients and the OpenAPI
document).

A stream never misses or repeats an event, across reconnects too: it subscribes to the
store's commits first, then reads from the store everything after ``Last-Event-ID`` (or
``?after=``), and then, each time a commit wakes it (or every heartbeat, for commits by other
processes), reads again after the last id it sent. The store is the only source of events, so
the order is the store's and a duplicate is impossible (ids only grow). The per-job stream ends
after the job's final event; the account stream (``/v1/events``) starts at the newest event
unless asked to resume, and runs until the client leaves or the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import web
from aiohttp_sse import sse_response

from imagerouter.jobs.types import JobEvent
from imagerouter.server.errors import ApiError
from imagerouter.server.http import dumps, job_id_param, json_response, query_params, validate
from imagerouter.server.keys import principal_key, settings_key, store_key, streams_key
from imagerouter.server.present import event_out
from imagerouter.server.schemas import EventQuery

__all__ = ["LAST_EVENT_ID", "account_events", "job_events"]

LAST_EVENT_ID = "Last-Event-ID"
_BATCH = 500


def _wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _resume_from(request: web.Request, query: EventQuery) -> int | None:
    """``Last-Event-ID`` (which wins) or ``?after=``; None when neither is given."""
    header = request.headers.get(LAST_EVENT_ID)
    if header is None or not header.strip():
        return query.after
    text = header.strip()
    if not text.isdigit() or len(text) > 18:
        raise ApiError(
            400,
            "invalid_last_event_id",
            f"{LAST_EVENT_ID} must be an event id (a non-negative integer), not {text[:40]!r}",
            field=LAST_EVENT_ID,
        )
    return int(text)


async def _page(request: web.Request, job_id: str | None, after: int, limit: int) -> web.Response:
    account_id = request[principal_key].account_id
    events = await request.app[store_key].events_since(account_id, job_id, after, limit + 1)
    shown = events[:limit]
    return json_response(
        {
            "object": "list",
            "data": [event_out(e) for e in shown],
            "has_more": len(events) > limit,
            "last_event_id": shown[-1].id if shown else after,
        }
    )


async def _stream(
    request: web.Request, job_id: str | None, after: int, *, job_final: bool
) -> web.StreamResponse:
    """Serve events after ``after`` as SSE until the job's final event, the client leaves or
    the server shuts down; see the module doc for why nothing is missed or repeated."""
    app = request.app
    store = app[store_key]
    account_id = request[principal_key].account_id
    heartbeat_s = app[settings_key].sse_heartbeat_s
    registry = app[streams_key]
    wake = asyncio.Event()

    def listener(events: Sequence[JobEvent]) -> None:
        if any(e.account_id == account_id and job_id in (None, e.job_id) for e in events):
            wake.set()

    unsubscribe = store.subscribe(listener)
    registry.add(wake)
    last = after
    try:
        async with sse_response(request, ping_interval=heartbeat_s) as stream:
            with contextlib.suppress(ConnectionError):
                while stream.is_connected() and not registry.closing:
                    wake.clear()
                    batch = await store.events_since(account_id, job_id, last, _BATCH)
                    for event in batch:
                        if event.id <= last:
                            continue
                        data = dumps(event_out(event))
                        await stream.send(data, id=str(event.id), event=event.type)
                        last = event.id
                        if job_id is not None and event.final:
                            return stream
                    if len(batch) == _BATCH:
                        continue
                    if job_final:  # final before we looked, and every event is now sent
                        return stream
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), heartbeat_s)
            return stream
    finally:
        registry.discard(wake)
        unsubscribe()


async def job_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/jobs/{id}/events``: the job's events, as SSE (ending after the final event)
    or as a JSON page."""
    job_id = job_id_param(request)
    query = validate(EventQuery, query_params(request))
    after = _resume_from(request, query)
    account_id = request[principal_key].account_id
    job = await request.app[store_key].get_job(account_id, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", field="id")
    if not _wants_stream(request):
        return await _page(request, job_id, after or 0, query.limit)
    return await _stream(request, job_id, after or 0, job_final=job.final)


async def account_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/events``: every event of the caller's jobs, as SSE (from now, or resuming
    after ``Last-Event-ID``) or as a JSON page (from ``?after=``, default the beginning)."""
    query = validate(EventQuery, query_params(request))
    after = _resume_from(request, query)
    if not _wants_stream(request):
        return await _page(request, None, after or 0, query.limit)
    if after is None:
        account_id = request[principal_key].account_id
        after = await request.app[store_key].last_event_id(account_id)
    return await _stream(request, None, after, job_final=False)
