"""The JSON body of a webhook: the Standard Webhooks envelope around the final job.

::

    {
      "type": "job.completed",              # or job.failed, job.canceled
      "timestamp": "2026-05-01T12:00:00.123456Z",   # when the job reached that state
      "data": {
        "object": "job",
        "id": "job_…",
        "status": "completed",
        "event_id": 42,                     # the store's event id (as on SSE)
        "model": "gpt-image-2",
        "output_urls": ["https://…"],       # one per image; empty unless completed
        "result": {"model", "provider", "provider_model", "provider_request_id",
                   "images": [{"url", "content_type", "width", "height"}]} | null,
                                            # a video output adds "duration" (seconds)
        "error": {"code", "message", …} | null,
        "metadata": {…},                    # the request's metadata, echoed back
        "created_at": 1.7e9, "finished_at": 1.7e9,
        "credits": {"price", "charged", "refunded"}
      }
    }

Images never travel inline (no ``b64_json``): the body stays small, as the spec asks.

An account that opted in (``PUT /v1/webhook`` with ``progress: true``) also gets
``job.progress`` while a provider's queue holds the job (:func:`progress_payload`)::

    {"type": "job.progress", "timestamp": "…",
     "data": {"object": "job", "id": "job_…", "status": "processing", "event_id": 41,
              "model": "flux-dev", "metadata": {…}, "provider": "fal",
              "provider_status": "IN_QUEUE", "queue_position": 3, "log": null}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imagerouter.jobs.rows import dumps
from imagerouter.jobs.types import Delivery, Job

__all__ = ["dumps_body", "progress_payload", "webhook_payload"]

_RESULT_FIELDS = ("model", "provider", "provider_model", "provider_request_id")
_IMAGE_FIELDS = ("url", "content_type", "width", "height")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    out = {name: result.get(name) for name in _RESULT_FIELDS}
    out["images"] = [_output(image) for image in result.get("images", [])]
    return out


def _output(image: dict[str, Any]) -> dict[str, Any]:
    """One output's fields; a video's ``duration`` too."""
    shown = {name: image.get(name) for name in _IMAGE_FIELDS}
    if image.get("duration") is not None:
        shown["duration"] = image["duration"]
    return shown


def webhook_payload(job: Job, delivery: Delivery, result: dict[str, Any] | None) -> dict[str, Any]:
    """The payload of ``delivery`` for the final ``job``; ``result`` is the job's result as
    the client should see it (URLs freshly signed), or None."""
    shown = _result(result) if job.status == "completed" else None
    return {
        "type": delivery.event_type,
        "timestamp": _iso(delivery.created_at),
        "data": {
            "object": "job",
            "id": job.id,
            "status": job.status,
            "event_id": delivery.event_id,
            "model": job.request.get("model"),
            "output_urls": [i["url"] for i in (shown or {}).get("images", []) if i.get("url")],
            "result": shown,
            "error": job.error,
            "metadata": job.request.get("metadata") or {},
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "credits": {"price": job.price, "charged": job.price, "refunded": job.refunded},
        },
    }


def progress_payload(job: Job, delivery: Delivery, data: dict[str, Any]) -> dict[str, Any]:
    """The payload of a ``job.progress`` delivery: the job, and what its provider's queue
    reported in the event (``data``: provider, provider_status, queue_position, log)."""
    return {
        "type": delivery.event_type,
        "timestamp": _iso(delivery.created_at),
        "data": {
            "object": "job",
            "id": job.id,
            "status": "processing",
            "event_id": delivery.event_id,
            "model": job.request.get("model"),
            "metadata": job.request.get("metadata") or {},
            **{k: data.get(k) for k in ("provider", "provider_status", "queue_position", "log")},
        },
    }


def dumps_body(payload: dict[str, Any]) -> str:
    """The exact text sent (signatures cover these bytes): the stores' compact JSON."""
    return dumps(payload)
