"""``POST /v1/images/generations``: OpenAI's Images API, run as a job to completion.

The official ``openai`` SDK works unchanged with ``base_url="http://HOST:PORT/v1"`` and an
imagerouter API key. The job is as durable as any other (charged, leased, refunded on failure);
the request simply waits for it. Errors come back in OpenAI's shape; failures that the router
already retried carry ``x-should-retry: false`` so that the SDK does not retry them again.

The answer follows the requested model's family (:mod:`imagerouter.server.openai_families`):
``b64_json`` with ``usage`` for GPT image models, ``url`` or ``b64_json`` for DALL·E. Image
URLs are absolute (:mod:`imagerouter.server.urls`). Once a job exists, every answer names it in
``x-imagerouter-job-id``.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from imagerouter.generation import ImageRequest, parse_size
from imagerouter.jobs.types import Job, StoredResponse
from imagerouter.server.delivery import stored_b64, stored_keys
from imagerouter.server.errors import ApiError, from_validation_error
from imagerouter.server.http import json_response, read_json, validate
from imagerouter.server.keys import (
    events_key,
    principal_key,
    router_key,
    settings_key,
    store_key,
)
from imagerouter.server.openai_families import (
    Family,
    check_request,
    estimate_usage,
    family_of,
    refuse_unknown_parameters,
    shown_quality,
)
from imagerouter.server.openai_videos import refuse_video_model
from imagerouter.server.present import job_result
from imagerouter.server.routing_prefs import with_key_defaults
from imagerouter.server.schemas import OpenAIImageRequest
from imagerouter.server.submit import begin_idempotent, create_job, price_of
from imagerouter.server.urls import absolute_url

__all__ = ["JOB_ID_HEADER", "images_generations", "openai_error"]

ROUTE = "POST /v1/images/generations"
#: Names the job an answer is about, so that a client can look it up at /v1/jobs/{id}.
JOB_ID_HEADER = "x-imagerouter-job-id"
MAX_IMAGE_BYTES = 50 * 1024 * 1024

#: Our error codes → (HTTP status, OpenAI error type, OpenAI error code).
_OPENAI_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "validation_error": (400, "invalid_request_error", None),
    "invalid_json": (400, "invalid_request_error", None),
    "unknown_model": (400, "invalid_request_error", "model_not_found"),
    "invalid_api_key": (401, "invalid_request_error", "invalid_api_key"),
    "insufficient_credits": (429, "insufficient_quota", "insufficient_quota"),
    "rate_limited": (429, "requests", "rate_limit_exceeded"),
    "content_rejected": (400, "image_generation_user_error", "moderation_blocked"),
    "invalid_request": (400, "invalid_request_error", None),
    "unknown_parameter": (400, "invalid_request_error", "unknown_parameter"),
    "invalid_value": (400, "invalid_request_error", "invalid_value"),
}


def openai_error(error: ApiError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Our error rendered in OpenAI's shape: status, body, extra headers."""
    status, kind, code = _OPENAI_ERRORS.get(
        error.code,
        (
            error.status,
            "server_error" if error.status >= 500 else "invalid_request_error",
            error.code,
        ),
    )
    headers = dict(error.headers)
    if error.code == "insufficient_credits" or status >= 500:
        headers["x-should-retry"] = "false"
    body = {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.field,
            "code": code or error.code,
        }
    }
    return status, body, headers


def _to_image_request(body: OpenAIImageRequest) -> ImageRequest:
    fields: dict[str, Any] = {"model": body.model, "prompt": body.prompt}
    for name in ("n", "size", "quality", "output_format", "routing"):
        value = getattr(body, name)
        if value is not None:
            fields[name] = value
    if body.user:
        fields["metadata"] = {"user": body.user}
    try:
        return ImageRequest.model_validate(fields)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _as_b64(session: aiohttp.ClientSession, url: str) -> str:
    timeout = aiohttp.ClientTimeout(total=30)
    async with session.get(url, timeout=timeout) as answer:
        answer.raise_for_status()
        data = await answer.content.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(502, "image_too_large", "the generated image is too large to inline")
    return base64.b64encode(data).decode("ascii")


async def _b64_of(request: web.Request, job: Job, index: int, image: dict[str, Any]) -> str:
    if image.get("b64_json"):
        return image["b64_json"]
    stored = stored_keys(request, job)
    if index in stored:
        return await stored_b64(request, stored[index], MAX_IMAGE_BYTES)
    url = image.get("url") or ""
    if not url.startswith(("https://", "http://")):
        # A server-relative URL of a backend no longer configured: never fetched through the
        # client's Host header (that would let a client aim this server's requests).
        raise ApiError(502, "image_unavailable", "the generated image is no longer readable")
    return await _as_b64(request.app[router_key].session, url)


async def _images(
    request: web.Request, job: Job, body: OpenAIImageRequest, family: Family
) -> list[dict[str, Any]]:
    """``data``: each image as ``url`` (absolute) or ``b64_json``, as the family answers."""
    wanted = body.response_format or family.default_format
    result = job_result(request, job) or {}
    out = []
    for index, image in enumerate(result.get("images", [])):
        if wanted == "url" and image.get("url"):
            item = {"url": absolute_url(request, image["url"])}
        else:
            item = {"b64_json": await _b64_of(request, job, index, image)}
        if family.revised_prompt:
            item["revised_prompt"] = body.prompt
        out.append(item)
    return out


def _echoed(job: Job, body: OpenAIImageRequest, family: Family) -> dict[str, Any]:
    """The request fields OpenAI reports back for this family, and ``usage``."""
    asked = job.request
    width, height = parse_size(asked.get("size", "auto"))
    values = {
        "size": f"{width}x{height}",
        "quality": shown_quality(asked.get("quality", "auto")),
        "output_format": asked.get("output_format", "png"),
        "background": "opaque",
    }
    out: dict[str, Any] = {name: values[name] for name in family.echoed}
    if family.usage:
        out["usage"] = estimate_usage(
            body.prompt, asked.get("quality", "auto"), width, height, asked.get("n", 1)
        )
    return out


async def _answer(
    request: web.Request,
    job: Job | None,
    body: OpenAIImageRequest,
    family: Family,
    created: int,
) -> StoredResponse:
    if job is None or not job.final:
        error = ApiError(504, "timeout", "the image was not ready before the job's deadline")
    elif job.status == "completed":
        assert job.result is not None
        answer: dict[str, Any] = {
            "created": created,
            "data": await _images(request, job, body, family),
            **_echoed(job, body, family),
        }
        return StoredResponse(200, answer)
    else:
        failure = job.error or {}
        code = failure.get("code", "job_failed")
        status = 400 if code in ("content_rejected", "invalid_request") else 503
        error = ApiError(status, code, failure.get("message", f"the job {job.status}"))
    status, error_body, headers = openai_error(error)
    return StoredResponse(status, error_body, headers)


async def images_generations(request: web.Request) -> web.Response:
    """``POST /v1/images/generations``: generate, wait, answer like OpenAI."""
    principal = request[principal_key]
    raw = await read_json(request)
    refuse_unknown_parameters(raw)
    body = validate(OpenAIImageRequest, raw)
    refuse_video_model(request, body.model)
    family = family_of(body.model)
    check_request(body, family)
    image_request = with_key_defaults(principal, _to_image_request(body))
    price = price_of(request, image_request)
    app = request.app
    settings = app[settings_key]
    deadline_s = settings.job_deadline_s or app[router_key].settings.router.deadline_s
    held = await begin_idempotent(request, principal, ROUTE, raw, lock_s=deadline_s + 30)
    if isinstance(held, web.Response):
        return held
    created = int(time.time())
    store = app[store_key]
    job_id = held.job_id if held else None
    if job_id is None:
        job_id = await create_job(request, principal, image_request, price, held)
    job = await app[events_key].wait_final(
        store, principal.account_id, job_id, wait_s=deadline_s + 5
    )
    try:
        answer = await _answer(request, job, body, family, created)
    except ApiError as exc:  # the job exists: the answer names it all the same
        answer = StoredResponse(*openai_error(exc))
    answer.headers[JOB_ID_HEADER] = job_id
    if held:
        await store.idempotency_finish(principal.account_id, held.key, answer)
    return json_response(answer.body, answer.status, answer.headers)
