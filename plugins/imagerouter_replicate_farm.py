"""Replicate's predictions API for the mock farm, registered by the Replicate plugin's
``register_farm_adapters`` hook (``imagerouter farm`` and ``farm_router`` pick it up).

- Create ``POST /replicate/v1/models/{owner}/{name}/predictions`` (official models) or
  ``POST /replicate/v1/predictions`` with ``version`` (``owner/name:sha`` or a bare version id)
  → 201 with the prediction. ``Prefer: wait`` (or ``wait=N``, 1–60 s) holds the answer until the
  prediction is done or N seconds passed.
- Get ``GET /replicate/v1/predictions/{id}``; cancel ``POST …/{id}/cancel`` (200, the
  prediction; a finished one is returned unchanged).
- A prediction is ``{id, model, version, input, logs, output, error, status, created_at,
  urls: {get, cancel, web}, metrics}``; ``status`` goes ``starting`` → ``processing`` →
  ``succeeded`` | ``failed`` | ``canceled``. ``output`` is a list of URLs, or one URL for
  single-image models (nano-banana).
- Inputs: ``prompt``; ``aspect_ratio`` (``16:9``…), ``megapixels`` or ``resolution``
  (``1K``/``2K``/``4K``); ``num_outputs`` (1–4), ``output_format``, ``seed``. Others are ignored.
- Content policy: the prediction ends ``failed`` with an NSFW error, as flux's checker reports.
- Auth ``Authorization: Bearer <token>`` (or the older ``Token``); errors are problem details
  ``{"title", "detail", "status"}`` (422s add ``invalid_fields``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from mockproviders import (
    Call,
    ErrorKind,
    FarmAdapter,
    FarmError,
    FarmJob,
    FarmJobState,
    FarmRoute,
    auth_token,
)
from mockproviders.images import MAX_SIDE, prompt_seed
from mockproviders.videos import is_video_model, read_video_input

__all__ = ["ReplicateAPI"]

#: Models whose ``output`` is one URL rather than a list.
SINGLE_OUTPUT_MODELS = {"google/nano-banana", "google/nano-banana-pro"}
NSFW_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
_RATIO = re.compile(r"^(\d{1,2}):(\d{1,2})$")
_RESOLUTIONS = {"1K": 1024, "2K": 2048, "4K": 4096}
_STATUS = {
    FarmJobState.QUEUED: "starting",
    FarmJobState.RUNNING: "processing",
    FarmJobState.CANCELED: "canceled",
}
_TITLES = {
    401: "Unauthenticated",
    429: "Request was throttled",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"title": title, "detail": detail, "status": status, **extra}
    return web.json_response(body, status=status)


def _invalid(field: str, description: str) -> web.Response:
    return _problem(
        422,
        "Input validation failed",
        f"- input.{field}: {description}",
        invalid_fields=[{"type": "invalid", "field": f"input.{field}", "description": description}],
    )


def _size(inputs: dict[str, Any]) -> tuple[int, int] | web.Response:
    """Width and height from ``aspect_ratio`` and ``megapixels`` / ``resolution``."""
    ratio = _RATIO.match(str(inputs.get("aspect_ratio") or "1:1"))
    if ratio is None or "0" in (ratio[1], ratio[2]):
        return _invalid("aspect_ratio", "must be one of the supported ratios such as 16:9")
    wide, tall = int(ratio[1]), int(ratio[2])
    if "resolution" in inputs:
        longest = _RESOLUTIONS.get(str(inputs["resolution"]).upper())
        if longest is None:
            return _invalid("resolution", "must be one of 1K, 2K, 4K")
        scale = longest / max(wide, tall)
    else:
        try:
            pixels = float(inputs.get("megapixels") or 1) * 1024 * 1024
        except ValueError:
            return _invalid("megapixels", "must be a number")
        scale = math.sqrt(pixels / (wide * tall))
    width, height = (round(side * scale / 16) * 16 for side in (wide, tall))
    return min(max(width, 16), MAX_SIDE), min(max(height, 16), MAX_SIDE)


def _read_input(body: Any, model: str = "") -> dict[str, Any] | web.Response:
    inputs = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inputs, dict):
        return _problem(422, "Input validation failed", "input is required and must be an object")
    prompt = inputs.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _invalid("prompt", "prompt is required")
    if is_video_model(model):
        default = 8 if "veo" in model else 5
        video = read_video_input(inputs, default_seconds=default, model_id=model)
        if isinstance(video, tuple):
            return _invalid(*video)
        seed = inputs.get("seed")
        seed = seed if isinstance(seed, int) else prompt_seed(prompt)
        return {**video, "input": inputs, "prompt": prompt, "seed": seed, "count": 1}
    count = inputs.get("num_outputs", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4:
        return _invalid("num_outputs", "must be an integer from 1 to 4")
    size = _size(inputs)
    if isinstance(size, web.Response):
        return size
    seed = inputs.get("seed")
    return {
        "input": inputs,
        "prompt": prompt,
        "width": size[0],
        "height": size[1],
        "count": count,
        "seed": seed if isinstance(seed, int) else prompt_seed(prompt),
    }


def _wait_seconds(prefer: str) -> float | None:
    """Seconds a ``Prefer: wait[=N]`` header asks to hold the request, or None."""
    match = re.search(r"\bwait(?:=(\d+))?", prefer)
    if match is None:
        return None
    return float(min(60, max(1, int(match[1] or 60))))


class ReplicateAPI(FarmAdapter):
    """Replicate's predictions API (create, sync wait, get, cancel)."""

    name = "replicate"
    prefix = "/replicate"
    sdk_path = "/v1"

    def routes(self) -> Sequence[FarmRoute]:
        """Create under ``/v1/models/…/predictions`` or ``/v1/predictions``; get and cancel."""
        return [
            FarmRoute(
                "POST", "/v1/models/{owner}/{model}/predictions", self.create, generation=True
            ),
            FarmRoute("POST", "/v1/predictions", self.create, generation=True),
            FarmRoute("GET", "/v1/predictions/{id}", self.get),
            FarmRoute("POST", "/v1/predictions/{id}/cancel", self.cancel),
        ]

    def api_key(self, request: web.Request) -> str | None:
        """``Authorization: Bearer <token>``, or the older ``Token <token>``."""
        return auth_token(request, "Bearer") or auth_token(request, "Token")

    async def create(self, call: Call) -> web.StreamResponse:
        """Start a prediction; with ``Prefer: wait`` answer once it is done (or the wait ends)."""
        info = call.request.match_info
        model = f"{info['owner']}/{info['model']}" if "owner" in info else None
        if model is None:
            version = call.body.get("version") if isinstance(call.body, dict) else None
            if not isinstance(version, str) or not version:
                return _problem(422, "Input validation failed", "version is required")
            model = version.split(":")[0] if "/" in version else "replicate/model"
        inputs = _read_input(call.body, model)
        if isinstance(inputs, web.Response):
            return inputs
        if "seconds" in inputs:
            call.take_video_time(f"{model}\x00{inputs['prompt']}\x00{inputs['seed']}")
        job = call.submit_job(model, inputs)
        wait = _wait_seconds(call.request.headers.get("Prefer", ""))
        held = min(wait, job.generation_s) if wait is not None else 0.0
        if held > 0:
            await asyncio.sleep(held)
        return web.json_response(self._prediction(call, job, job.submitted + held), status=201)

    async def get(self, call: Call) -> web.StreamResponse:
        """The prediction as it stands."""
        job = call.jobs.get(call.request.match_info["id"])
        if job is None:
            return _problem(404, "Not found", "Prediction not found.")
        return web.json_response(self._prediction(call, job))

    async def cancel(self, call: Call) -> web.StreamResponse:
        """Cancel a prediction that is still starting or processing."""
        job = call.jobs.get(call.request.match_info["id"])
        if job is None:
            return _problem(404, "Not found", "Prediction not found.")
        if job.state(call.jobs.now()) in (FarmJobState.QUEUED, FarmJobState.RUNNING):
            job.canceled_at = call.jobs.now()
        return web.json_response(self._prediction(call, job))

    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """Problem details, as Replicate answers them."""
        title = _TITLES.get(error.status, "Error")
        if error.kind is ErrorKind.RATE_LIMITED:
            wait = math.ceil(error.retry_after_s) if error.retry_after_s else 1
            detail = f"Request was throttled. Expected available in {wait} second(s)."
        elif error.kind is ErrorKind.UNAUTHORIZED:
            detail = "You did not pass a valid authentication token"
        elif error.kind is ErrorKind.UNAVAILABLE:
            detail = "Replicate is unavailable (mock outage)"
        else:
            detail = f"Injected error: {error.message}"
        return _problem(error.status, title, detail)

    def _prediction(self, call: Call, job: FarmJob, at: float = 0.0) -> dict[str, Any]:
        state, data = job.state(max(call.jobs.now(), at)), job.data
        done = state is FarmJobState.DONE
        failed = done and job.content_policy
        output: list[str] | str | None = None
        if done and not failed and "seconds" in data:
            output, _ = call.video(
                data["prompt"], data["seed"], data["width"], data["height"], data["seconds"]
            )
        elif done and not failed:
            images = call.images(
                data["prompt"], data["seed"], data["width"], data["height"], data["count"]
            )
            output = [image.url for image in images]
            if job.app in SINGLE_OUTPUT_MODELS:
                output = output[0]
        status = ("failed" if failed else "succeeded") if done else _STATUS[state]
        url = f"{call.origin}{self.prefix}/v1/predictions/{job.id}"
        return {
            "id": job.id,
            "model": job.app,
            "version": "hidden",
            "input": data["input"],
            "logs": _logs(job, state, max(call.jobs.now(), at)),
            "output": output,
            "error": NSFW_ERROR if failed else None,
            "status": status,
            "created_at": job.created_at(),
            "data_removed": False,
            "urls": {
                "get": url,
                "cancel": f"{url}/cancel",
                "web": f"https://replicate.com/p/{job.id}",
            },
            "metrics": {"predict_time": round(job.generation_s, 3)} if done else {},
        }


def _logs(job: FarmJob, state: FarmJobState, now: float) -> str:
    """The model's log so far, as Replicate's flux models print it: the seed, then a
    progress bar over 28 steps while the prediction runs."""
    if state in (FarmJobState.QUEUED, FarmJobState.CANCELED):
        return ""
    running_s = job.generation_s * (1 - job.queued_share)
    started = job.submitted + job.generation_s * job.queued_share
    share = 1.0 if state is FarmJobState.DONE or running_s <= 0 else (now - started) / running_s
    step = max(0, min(_STEPS, int(_STEPS * share)))
    return (
        f"Using seed: {job.data.get('seed')}\nRunning prediction\n"
        f"{round(100 * step / _STEPS):3d}%| {step}/{_STEPS}\n"
    )


_STEPS = 28
