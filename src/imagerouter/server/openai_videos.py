"""OpenAI's Videos API over the job queue: ``POST /v1/videos``, ``GET /v1/videos[/{id}]``,
``GET /v1/videos/{id}/content``, ``DELETE /v1/videos/{id}``.

The official ``openai`` SDK's ``client.videos`` works unchanged with
``base_url="http://HOST:PORT/v1"`` and an imagerouter API key. A video is a job of a catalog
video model (``veo3-fast``, ``seedance-lite``…): charged per second at create, run by the
workers, refunded exactly once if it fails; its id is the job's, so ``/v1/jobs/{id}``, SSE and
webhooks see the same thing.

Create takes the SDK's multipart form (or JSON): ``prompt``, ``model``, ``seconds`` (``"8"``),
``size`` (``"1280x720"``), ``input_reference`` (an image upload, or ``input_reference[image_url]``)
and, beyond OpenAI's fields, ``resolution``, ``aspect_ratio``, ``generate_audio``, ``seed``,
``webhook_url`` and ``metadata`` (JSON text in a form). The answer is OpenAI's ``Video`` object;
``status`` maps queued → queued, processing → in_progress, completed → completed, failed and
canceled → failed (with ``error``). The content route streams the stored MP4 from local disk, or
redirects to its presigned S3 (or provider) URL.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from imagerouter.errors import UnknownModel, UnsupportedRequest
from imagerouter.generation import ImageRequest
from imagerouter.jobs.errors import JobFinished, JobNotFound
from imagerouter.jobs.types import Job, StoredResponse
from imagerouter.server.delivery import stored_keys
from imagerouter.server.errors import ApiError, api_error
from imagerouter.server.http import job_id_param, query_params, read_json, validate
from imagerouter.server.keys import (
    principal_key,
    router_key,
    settings_key,
    storage_key,
    store_key,
    workers_key,
)
from imagerouter.server.present import job_result
from imagerouter.server.routing_prefs import with_key_defaults
from imagerouter.server.submit import Answer, price_of, submit_once
from imagerouter.server.urls import absolute_url
from imagerouter.server.webhook_views import check_submitted_webhook
from imagerouter.storage import LocalStorage

__all__ = [
    "DEFAULT_MODEL",
    "OpenAIVideoRequest",
    "create_video",
    "delete_video",
    "list_videos",
    "refuse_video_model",
    "retrieve_video",
    "video_content",
    "video_object",
]

ROUTE = "POST /v1/videos"
#: The model a create without ``model`` gets (OpenAI's default, sora-2, is not served here).
DEFAULT_MODEL = "veo3-fast"
#: How long the SDK's ``create_and_poll`` waits between polls (``openai-poll-after-ms``).
POLL_AFTER_MS = 1000
#: Largest ``input_reference`` image upload (it travels to the provider as a data URL, and
#: is kept with the job's request: a larger first frame should be given as a URL).
MAX_REFERENCE_BYTES = 2 * 1024 * 1024
#: Job pages read at most to fill one page of videos (the listing skips image jobs).
MAX_PAGES = 20
_STATUS = {"queued": "queued", "processing": "in_progress", "completed": "completed"}
_TEXT_FIELDS = (
    "prompt",
    "model",
    "seconds",
    "size",
    "resolution",
    "aspect_ratio",
    "generate_audio",
    "seed",
    "webhook_url",
    "metadata",
    "input_reference[image_url]",
)


class OpenAIVideoRequest(BaseModel):
    """``POST /v1/videos`` (a multipart form, as the SDK sends it, or JSON)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=32_000)
    model: str = Field(default=DEFAULT_MODEL, min_length=1, max_length=200)
    seconds: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]?$", description="Seconds, as OpenAI says it: '8'."
    )
    size: str | None = Field(default=None, max_length=32, description="WIDTHxHEIGHT: 1280x720.")
    resolution: str | None = None
    aspect_ratio: str | None = None
    generate_audio: bool | None = None
    seed: int | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] | None = None
    input_reference: str | None = Field(
        default=None, description="The first frame: an image upload, or an image URL."
    )


#: The unified request's names of the create's fields, by the name the client sent them as.
_SENT_AS = {"duration": "seconds", "image_url": "input_reference"}


def _as_sent(error: ApiError) -> ApiError:
    """``error`` naming the field as the client sent it (``seconds``, not ``duration``)."""
    sent = _SENT_AS.get(error.field or "")
    if sent is None:
        return error
    assert error.field is not None
    message = error.message.replace(f"{error.field}:", f"{sent}:", 1)
    return ApiError(
        error.status, error.code, message, field=sent, extra=error.extra, headers=error.headers
    )


def _job_request(body: OpenAIVideoRequest) -> dict[str, Any]:
    """The unified request fields of an OpenAI video create."""
    fields: dict[str, Any] = {"model": body.model, "prompt": body.prompt}
    if body.seconds is not None:
        fields["duration"] = int(body.seconds)
    for name in ("size", "resolution", "aspect_ratio", "generate_audio", "seed", "webhook_url"):
        value = getattr(body, name)
        if value is not None:
            fields[name] = value
    if body.metadata is not None:
        fields["metadata"] = body.metadata
    if body.input_reference is not None:
        fields["image_url"] = body.input_reference
    return fields


async def _read_form(request: web.Request) -> dict[str, Any]:
    """The create's fields from a multipart form: text fields as strings (``generate_audio``
    and ``seed`` parsed, ``metadata`` as JSON), an ``input_reference`` image as a data URL."""
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    limit = request.app[settings_key].max_body_bytes
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        name = part.name
        if name == "input_reference" and part.filename is not None:
            data = await _read_capped(part, MAX_REFERENCE_BYTES)
            kind = part.headers.get("Content-Type", "image/png").split(";")[0].strip()
            if not kind.startswith("image/"):
                raise ApiError(
                    400, "invalid_value", "input_reference: must be an image", field=name
                )
            encoded = base64.b64encode(data).decode("ascii")
            fields["input_reference"] = f"data:{kind};base64,{encoded}"
            continue
        if name not in _TEXT_FIELDS:
            raise ApiError(400, "unknown_parameter", f"{name}: unknown parameter", field=name)
        text = (await part.read(decode=True)).decode("utf-8", "replace")
        if len(text) > limit:
            raise ApiError(413, "payload_too_large", f"{name}: too long", field=name)
        fields[name] = text
    if "input_reference[image_url]" in fields:
        fields["input_reference"] = fields.pop("input_reference[image_url]")
    return _typed(fields)


async def _read_capped(part: BodyPartReader, limit: int) -> bytes:
    """An uploaded part's bytes, chunk by chunk (the server's JSON body limit does not apply
    to it); 413 naming it past ``limit``."""
    chunks, size = [], 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                "body_too_large",
                f"{part.name}: larger than {limit} bytes; give a first frame this big as a URL",
                field=part.name,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _typed(fields: dict[str, Any]) -> dict[str, Any]:
    """A form's text values as the types the JSON body has."""
    if "generate_audio" in fields:
        text = str(fields["generate_audio"]).lower()
        if text not in ("true", "false"):
            raise ApiError(
                400,
                "invalid_value",
                "generate_audio: must be true or false",
                field="generate_audio",
            )
        fields["generate_audio"] = text == "true"
    if "seed" in fields:
        if not (str(fields["seed"]).isascii() and str(fields["seed"]).isdigit()):
            raise ApiError(400, "invalid_value", "seed: must be an integer", field="seed")
        fields["seed"] = int(fields["seed"])
    if "metadata" in fields:
        try:
            fields["metadata"] = json.loads(fields["metadata"])
        except ValueError:
            raise ApiError(
                400, "invalid_value", "metadata: must be a JSON object", field="metadata"
            ) from None
    return fields


def _check_video_model(request: web.Request, model: str) -> None:
    """400 naming ``model`` unless it is a catalog video model."""
    try:
        found = request.app[router_key].resolve(model)
    except UnknownModel as exc:
        videos = [
            name
            for name, entry in request.app[router_key].catalog.models.items()
            if entry.kind == "video"
        ]
        raise api_error(
            exc,
            f"model: unknown model {model!r}; video models: {', '.join(videos)}",
            field="model",
        ) from None
    if found.kind != "video":
        raise ApiError(
            400,
            "invalid_value",
            f"model: {model} makes images; use POST /v1/images/generations or /v1/jobs",
            field="model",
        )


def refuse_video_model(request: web.Request, model: str) -> None:
    """For the Images route: 400 naming ``model`` if it is a video model (an unknown model
    is left to the price check, which names it with the known ones)."""
    try:
        found = request.app[router_key].resolve(model)
    except UnknownModel:
        return
    if found.kind == "video":
        raise ApiError(
            400, "invalid_value", f"model: {model} makes videos; use POST /v1/videos", field="model"
        )


def video_object(request: web.Request, job: Job) -> dict[str, Any]:
    """A job as OpenAI's ``Video`` object."""
    asked = job.request
    status = _STATUS.get(job.status, "failed")
    completed_at = int(job.finished_at) if job.finished_at and job.final else None
    progress = 100 if job.final else 0
    if job.status == "processing" and job.started_at is not None:
        progress = min(95, 5 + int(time.time() - job.started_at))
    error = None
    if status == "failed":
        failure = job.error or {"code": "canceled", "message": f"the video was {job.status}"}
        error = {"code": failure.get("code", "failed"), "message": failure.get("message", "")}
    expires_at = None
    if job.status == "completed" and completed_at is not None:
        expires_at = completed_at + int(request.app[settings_key].storage.url_ttl_s)
    return {
        "id": job.id,
        "object": "video",
        "model": asked.get("model"),
        "status": status,
        "progress": progress,
        "created_at": int(job.created_at),
        "completed_at": completed_at,
        "expires_at": expires_at,
        "prompt": asked.get("prompt"),
        "seconds": str(asked.get("duration") or ""),
        "size": asked.get("size"),
        "remixed_from_video_id": None,
        "error": error,
    }


async def create_video(request: web.Request) -> web.Response:
    """``POST /v1/videos``: charge and queue a video job; the ``Video`` object, queued."""
    principal = request[principal_key]
    if request.content_type.startswith("multipart/"):
        try:
            raw: Any = await _read_form(request)
        except (ValueError, AssertionError, LookupError) as exc:
            # aiohttp's multipart reader refuses a body without its boundary, or whose parts
            # are malformed, with these (ApiError, the form's own refusals, is none of them)
            raise ApiError(
                400, "invalid_multipart", f"the multipart body cannot be read: {exc}", field="body"
            ) from None
    else:
        raw = await read_json(request)
    body = validate(OpenAIVideoRequest, raw)
    _check_video_model(request, body.model)
    fields = _job_request(body)
    if fields.get("webhook_url"):
        await check_submitted_webhook(request, fields)
    try:
        image_request = with_key_defaults(principal, validate(ImageRequest, fields))
        price = price_of(request, image_request)
    except UnsupportedRequest as exc:
        raise _as_sent(api_error(exc)) from None
    except ApiError as exc:
        raise _as_sent(exc) from None
    model = request.app[router_key].resolve(image_request.model)
    assert model.video is not None
    resolved = model.video.resolve(model.name, image_request)

    def respond(job_id: str, created_at: float) -> Answer:
        video = {
            "id": job_id,
            "object": "video",
            "model": resolved.model,
            "status": "queued",
            "progress": 0,
            "created_at": int(created_at),
            "completed_at": None,
            "expires_at": None,
            "prompt": resolved.prompt,
            "seconds": str(resolved.duration),
            "size": resolved.size,
            "remixed_from_video_id": None,
            "error": None,
        }
        return Answer(StoredResponse(200, video, {"x-imagerouter-price": str(price)}))

    return await submit_once(request, principal, resolved, price, ROUTE, raw, respond)


async def _video_job(request: web.Request) -> Job:
    job_id = job_id_param(request)
    job = await request.app[store_key].get_job(request[principal_key].account_id, job_id)
    if job is None or job.request.get("duration") is None:
        raise ApiError(404, "not_found", f"no video {job_id!r}", field="video_id")
    return job


async def retrieve_video(request: web.Request) -> web.Response:
    """``GET /v1/videos/{id}``: the ``Video`` object, with the SDK's poll interval header."""
    job = await _video_job(request)
    headers = {} if job.final else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return web.json_response(video_object(request, job), headers=headers)


async def list_videos(request: web.Request) -> web.Response:
    """``GET /v1/videos``: the caller's videos, newest first, ``after`` a video id."""
    query = query_params(request)
    limit = query.get("limit", "20")
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 100:
        raise ApiError(400, "invalid_value", "limit: must be 1 to 100", field="limit")
    if query.get("order", "desc") != "desc":
        raise ApiError(400, "invalid_value", "order: only 'desc' is served", field="order")
    after, wanted = query.get("after"), int(limit)
    store, account = request.app[store_key], request[principal_key].account_id
    if after is not None:  # an id that is none of the caller's videos: said, not an empty page
        found = await store.get_job(account, after, with_attempts=False)
        if found is None or found.request.get("duration") is None:
            raise ApiError(400, "invalid_value", f"after: no video {after!r}", field="after")
    videos: list[dict[str, Any]] = []
    passed, cursor, more = after is None, None, False
    for _ in range(MAX_PAGES):
        page = await store.list_jobs(account, status=None, limit=100, cursor=cursor)
        for job in page.jobs:
            if not passed:
                passed = job.id == after
                continue
            if job.request.get("duration") is None:
                continue
            if len(videos) == wanted:
                more = True
                break
            videos.append(video_object(request, job))
        cursor = page.next_cursor
        if more or cursor is None:
            break
    return web.json_response(
        {
            "object": "list",
            "data": videos,
            "first_id": videos[0]["id"] if videos else None,
            "last_id": videos[-1]["id"] if videos else None,
            "has_more": more,
        }
    )


async def delete_video(request: web.Request) -> web.Response:
    """``DELETE /v1/videos/{id}``: cancel a video still queued or in progress (refunded); a
    finished video is kept until its URLs expire (409)."""
    job = await _video_job(request)
    try:
        await request.app[store_key].cancel_job(request[principal_key].account_id, job.id)
    except JobNotFound:
        raise ApiError(404, "not_found", f"no video {job.id!r}", field="video_id") from None
    except JobFinished as exc:
        raise api_error(
            exc,
            f"video {job.id!r} is already {exc.status}; finished videos are kept until they expire",
            field="video_id",
        ) from None
    request.app[workers_key].cancel_local(job.id, "client")
    return web.json_response({"id": job.id, "object": "video.deleted", "deleted": True})


async def video_content(request: web.Request) -> web.StreamResponse:
    """``GET /v1/videos/{id}/content``: the MP4, streamed from local storage, or a redirect to
    its presigned (or provider) URL; 409 until the video is completed."""
    job = await _video_job(request)
    variant = request.query.get("variant", "video")
    if variant != "video":
        raise ApiError(
            400,
            "invalid_value",
            f"variant: only 'video' is served, not {variant!r}",
            field="variant",
        )
    if job.status != "completed":
        raise ApiError(
            409, "video_not_ready", f"video {job.id!r} is {job.status}", field="video_id"
        )
    storage = request.app.get(storage_key)
    keys = stored_keys(request, job)
    if isinstance(storage, LocalStorage) and 0 in keys:
        path = storage.path(keys[0])
        if not path.is_file():
            raise ApiError(404, "not_found", "the video file is gone", field="video_id")
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})
    result = job_result(request, job) or {}
    outputs = result.get("images") or []
    url = outputs[0].get("url") if outputs else None
    if not url:
        raise ApiError(404, "not_found", "the video has no stored copy", field="video_id")
    raise web.HTTPFound(absolute_url(request, url))
