"""Handlers of the job routes: submit, the compatible submit, read, list and cancel."""

from __future__ import annotations

from aiohttp import web

from imagerouter.generation import ImageRequest
from imagerouter.jobs.errors import InvalidCursor, JobFinished, JobNotFound
from imagerouter.jobs.types import StoredResponse
from imagerouter.server.errors import ApiError, api_error
from imagerouter.server.http import (
    job_id_param,
    json_response,
    link,
    query_params,
    read_json,
    validate,
)
from imagerouter.server.keys import principal_key, store_key, workers_key
from imagerouter.server.present import job_accepted, job_accepted_json, job_out
from imagerouter.server.routing_prefs import with_key_defaults
from imagerouter.server.schemas import JobListQuery
from imagerouter.server.submit import Answer, price_of, submit_once
from imagerouter.server.webhook_views import check_submitted_webhook

__all__ = ["cancel_job", "compat_submit", "get_job", "list_jobs", "submit_job"]


async def _submit(request: web.Request, route: str, compat: bool) -> web.Response:
    principal = request[principal_key]
    body = await read_json(request)
    if isinstance(body, dict) and body.get("webhook_url"):
        await check_submitted_webhook(request, body)
    image_request = with_key_defaults(principal, validate(ImageRequest, body))
    price = price_of(request, image_request)

    def respond(job_id: str, created_at: float) -> Answer:
        if compat:
            return Answer(StoredResponse(202, {"data": {"jobId": job_id}}))
        location = link(request, f"/v1/jobs/{job_id}")
        return Answer(
            StoredResponse(
                202, job_accepted(location, job_id, created_at, price), {"Location": location}
            ),
            job_accepted_json(location, job_id, created_at, price),
        )

    return await submit_once(request, principal, image_request, price, route, body, respond)


async def submit_job(request: web.Request) -> web.Response:
    """``POST /v1/jobs``: validate, charge and queue a job; 202 with its id and links."""
    return await _submit(request, "POST /v1/jobs", compat=False)


async def compat_submit(request: web.Request) -> web.Response:
    """``POST /api/generate/image``: the same submit, answered ``{"data": {"jobId": ...}}``."""
    return await _submit(request, "POST /api/generate/image", compat=True)


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id!r}", field="id")


async def get_job(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{id}``: the job with its result or error, attempts and credits."""
    job_id = job_id_param(request)
    job = await request.app[store_key].get_job(request[principal_key].account_id, job_id)
    if job is None:
        raise _not_found(job_id)
    return json_response(job_out(request, job))


async def list_jobs(request: web.Request) -> web.Response:
    """``GET /v1/jobs``: the caller's jobs, newest first, by status, a page at a time."""
    query = validate(JobListQuery, query_params(request))
    try:
        page = await request.app[store_key].list_jobs(
            request[principal_key].account_id,
            status=query.status,
            limit=query.limit,
            cursor=query.cursor,
        )
    except InvalidCursor as exc:
        raise api_error(exc, field="cursor") from None
    return json_response(
        {
            "object": "list",
            "data": [job_out(request, job, with_attempts=False) for job in page.jobs],
            "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor,
        }
    )


async def cancel_job(request: web.Request) -> web.Response:
    """``DELETE /v1/jobs/{id}``: cancel a queued or running job and refund it."""
    job_id = job_id_param(request)
    store = request.app[store_key]
    account_id = request[principal_key].account_id
    try:
        await store.cancel_job(account_id, job_id)
    except JobNotFound:
        raise _not_found(job_id) from None
    except JobFinished as exc:
        raise api_error(
            exc,
            f"job {job_id!r} is already {exc.status} and cannot be canceled",
            field="id",
            extra={"status": exc.status},
        ) from None
    request.app[workers_key].cancel_local(job_id, "client")
    job = await store.get_job(account_id, job_id)
    assert job is not None
    return json_response(job_out(request, job))
