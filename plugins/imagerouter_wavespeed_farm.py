"""WaveSpeed's v3 API for the mock farm, wire-compatible; registered by the WaveSpeed plugin's
``register_farm_adapters`` hook.

Point the SDK at ``wavespeed.Client(api_key=..., base_url=farm.base_url("wavespeed"))``.

- Submit ``POST /wavespeed/api/v3/{model-id}`` -> 200 ``{"code": 200, "message": "success",
  "data": {id, model, outputs: [], urls: {get}, has_nsfw_contents, status: "created",
  created_at, error: "", timings}}``. With ``"enable_sync_mode": true`` the POST waits for the
  generation and answers the completed ``data``.
- Poll ``GET /wavespeed/api/v3/predictions/{id}/result`` (or without ``/result``): ``created``,
  then ``processing``, then ``completed`` (with ``outputs``) or ``failed``.
- Content policy: the task ends ``failed``, its ``error`` names the content policy (NSFW) and
  ``has_nsfw_contents`` is ``[true]``.
- Inputs: ``prompt``; ``size`` (``1024*1024`` or ``1024x1024``) or ``aspect_ratio`` +
  ``resolution`` (``1k``/``2k``/``4k``, the longer side); ``quality``, ``seed``,
  ``num_images``.
- Video models (an id naming Veo or Seedance, e.g. ``google/veo3-fast``,
  ``bytedance/seedance-v1-lite-t2v-480p``) take ``duration`` (seconds), ``aspect_ratio``,
  ``resolution`` (or the id's ``-480p`` suffix), ``generate_audio``, ``seed`` and ``image``,
  take ``video_generation_ms``, and answer ``outputs: [<mp4 url>]``.
- Auth ``Authorization: Bearer <key>``; errors ``{"code": <status>, "message": ..., "data": null}``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from mockproviders import Call, ErrorKind, FarmAdapter, FarmError, FarmJob, FarmJobState, FarmRoute
from mockproviders.images import MAX_SIDE, parse_wxh, prompt_seed
from mockproviders.videos import is_video_model, read_video_input

__all__ = ["WaveSpeedAPI"]

#: The longer side of an image at each ``resolution``.
RESOLUTIONS = {"1k": 1024, "2k": 2048, "4k": 3840}
_RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
_POLICY_ERROR = (
    "Content policy violation: NSFW content detected in the request; the prediction was blocked."
)
_STATUS = {
    FarmJobState.QUEUED: "created",
    FarmJobState.RUNNING: "processing",
    FarmJobState.CANCELED: "cancelled",
}
_MESSAGES = {
    401: "Unauthorized: invalid or missing API key",
    429: "Too many requests, please slow down",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}


def _wrapped(status: int, message: str, data: Any = None) -> web.Response:
    return web.json_response({"code": status, "message": message, "data": data}, status=status)


def _size(body: dict[str, Any]) -> tuple[int, int] | str:
    """The requested size, or the reason it cannot be read."""
    if body.get("size") is not None:
        size = parse_wxh(str(body["size"]))
        return size if size is not None else f"invalid size {body['size']!r}; use 1024*1024"
    if body.get("aspect_ratio") is None:
        return (1024, 1024)
    ratio = _RATIO.match(str(body["aspect_ratio"]))
    longest = RESOLUTIONS.get(str(body.get("resolution") or "1k").lower())
    if ratio is None or longest is None or 0 in (int(ratio[1]), int(ratio[2])):
        return "invalid aspect_ratio or resolution; use e.g. 16:9 and 1k, 2k or 4k"
    wide, tall = int(ratio[1]), int(ratio[2])
    short = max(16, round(longest * min(wide, tall) / max(wide, tall) / 16) * 16)
    width, height = (longest, short) if wide >= tall else (short, longest)
    return min(width, MAX_SIDE), min(height, MAX_SIDE)


def _read_input(body: Any, model: str = "") -> dict[str, Any] | web.Response:
    if not isinstance(body, dict):
        return _wrapped(400, "request body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _wrapped(400, "prompt is required")
    if is_video_model(model):
        video = read_video_input(body, default_seconds=8 if "veo" in model else 5, model_id=model)
        if isinstance(video, tuple):
            return _wrapped(400, video[1])
        seed = body.get("seed")
        if seed is None or seed == -1:
            seed = prompt_seed(prompt)
        elif not isinstance(seed, int) or isinstance(seed, bool):
            return _wrapped(400, "seed must be an integer")
        return {**video, "prompt": prompt, "seed": seed}
    size = _size(body)
    if isinstance(size, str):
        return _wrapped(400, size)
    count = body.get("num_images", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
        return _wrapped(400, "num_images must be an integer from 1 to 10")
    seed = body.get("seed")
    if seed is None or seed == -1:
        seed = prompt_seed(prompt)
    elif not isinstance(seed, int) or isinstance(seed, bool):
        return _wrapped(400, "seed must be an integer")
    return {
        "prompt": prompt,
        "width": size[0],
        "height": size[1],
        "num_images": count,
        "seed": seed,
        "quality": body.get("quality"),
    }


class WaveSpeedAPI(FarmAdapter):
    """WaveSpeed's v3 prediction API (submit, poll, sync mode)."""

    name = "wavespeed"
    prefix = "/wavespeed"

    def routes(self) -> Sequence[FarmRoute]:
        """Submit under ``/api/v3/{model}``, poll under ``/api/v3/predictions/{id}``."""
        return [
            FarmRoute("GET", "/api/v3/predictions/{task_id}/result", self.poll),
            FarmRoute("GET", "/api/v3/predictions/{task_id}", self.poll),
            FarmRoute("POST", "/api/v3/{model:.+}", self.submit, generation=True),
        ]

    async def submit(self, call: Call) -> web.StreamResponse:
        """Create a task; in sync mode, wait for it and answer it completed."""
        model = call.request.match_info["model"].strip("/")
        inputs = _read_input(call.body, model)
        if isinstance(inputs, web.Response):
            return inputs
        if "seconds" in inputs:
            call.take_video_time(f"{model}\x00{inputs['prompt']}\x00{inputs['seed']}")
        job = call.submit_job(model, inputs)
        if isinstance(call.body, dict) and call.body.get("enable_sync_mode") is True:
            await call.generate()
            finished = job.submitted + job.generation_s
            return _wrapped(200, "success", self._data(call, job, at=finished))
        return _wrapped(200, "success", self._data(call, job))

    async def poll(self, call: Call) -> web.StreamResponse:
        """The task as it stands."""
        job = call.jobs.get(call.request.match_info["task_id"])
        if job is None:
            return _wrapped(404, "prediction not found")
        return _wrapped(200, "success", self._data(call, job))

    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """WaveSpeed's ``{"code", "message", "data": null}``."""
        message = _MESSAGES.get(error.status, error.message)
        if error.kind is ErrorKind.UNAVAILABLE:
            message = "Service temporarily unavailable (mock outage)"
        return _wrapped(error.status, message)

    def _data(self, call: Call, job: FarmJob, at: float | None = None) -> dict[str, Any]:
        state = job.state(max(call.jobs.now(), at or 0.0))
        inputs = job.data
        done = state is FarmJobState.DONE
        failed = done and job.content_policy
        outputs: list[str] = []
        if done and not failed and "seconds" in inputs:
            url, _ = call.video(
                inputs["prompt"],
                inputs["seed"],
                inputs["width"],
                inputs["height"],
                inputs["seconds"],
            )
            outputs = [url]
        elif done and not failed:
            outputs = [
                image.url
                for image in call.images(
                    inputs["prompt"],
                    inputs["seed"],
                    inputs["width"],
                    inputs["height"],
                    inputs["num_images"],
                )
            ]
        nsfw = [True] if failed else [False] * len(outputs)
        return {
            "id": job.id,
            "model": job.app,
            "outputs": outputs,
            "urls": {"get": f"{call.origin}{self.prefix}/api/v3/predictions/{job.id}/result"},
            "has_nsfw_contents": nsfw,
            "status": ("failed" if failed else "completed") if done else _STATUS[state],
            "created_at": job.created_at(),
            "error": _POLICY_ERROR if failed else "",
            "timings": {"inference": round(job.generation_s * 1000)} if done else {},
        }
