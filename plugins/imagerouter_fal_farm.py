"""fal's queue API and its synchronous run API for the mock farm, wire-compatible; registered by
the fal plugin's ``register_farm_adapters`` hook.

fal-client builds its URLs as ``https://{FAL_QUEUE_RUN_HOST}/<app_id>`` and
``https://{FAL_RUN_HOST}/<app_id>``, so with the farm in TLS mode and
``FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/fal/queue``, ``FAL_RUN_HOST=127.0.0.1:PORT/fal/run`` and
``SSL_CERT_FILE`` set to the farm's CA bundle, the unchanged SDK talks to the farm.

- Submit ``POST /fal/queue/{owner}/{app}[/{path}]`` -> ``{request_id, response_url,
  status_url, cancel_url, status: "IN_QUEUE", queue_position}``; the URLs use the scheme and
  host the request came in on, and drop the sub-path, as fal's do.
- Status ``GET …/{owner}/{app}/requests/{id}/status[?logs=true]``: 202 ``IN_QUEUE`` (with
  ``queue_position``) or ``IN_PROGRESS`` (with ``logs``), 200 ``COMPLETED`` (with ``logs`` and
  ``metrics``).
- Result ``GET …/requests/{id}``: the output, or 400 while the job is not done.
- Cancel ``PUT …/requests/{id}/cancel``: 202 ``CANCELLATION_REQUESTED``, 400
  ``ALREADY_COMPLETED``, 404 ``NOT_FOUND``.
- Sync ``POST /fal/run/{app_id}``: waits ``generation_ms`` and answers the output directly.
- Video apps (an id naming Veo, Seedance or ``*-to-video``) take ``duration`` (``"8s"`` or
  ``"5"``), ``aspect_ratio``, ``resolution``, ``generate_audio``, ``seed`` and ``image_url``, take
  ``video_generation_ms``, and answer ``{"video": {url, content_type, file_name, file_size},
  "seed"}``: a small valid MP4 the farm writes itself.
- Auth ``Authorization: Key <key>``.
- Errors: validation and content policy as 422 ``{"detail": [{loc, msg, type, …}]}``
  (content policy: the submit succeeds, the status says ``COMPLETED``, the result is the 422);
  infrastructure errors as ``{"detail": "...", "error_type": "..."}`` with the same type in
  ``X-Fal-Error-Type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

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
from mockproviders.images import parse_wxh, prompt_seed
from mockproviders.videos import is_video_model, read_video_input

__all__ = ["FalQueueAPI"]

#: fal's named image sizes.
IMAGE_SIZE_PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
    "auto": (1024, 1024),
}
_NAMESPACES = ("workflows", "comfy")
_ERROR_TYPES = {500: "internal_error", 502: "runner_incomplete_response"}


def _app_root(app_path: str) -> str | None:
    """``owner/app`` (with its namespace, if any) of an app id; None if it is not one."""
    parts = [part for part in app_path.split("/") if part]
    needed = 3 if parts and parts[0] in _NAMESPACES else 2
    if len(parts) < needed:
        return None
    return "/".join(parts[:needed])


def _detail(loc: str, msg: str, kind: str, **extra: Any) -> web.Response:
    """A 422 in fal's (FastAPI's) validation shape, about ``body.<loc>``."""
    item = {"loc": ["body", loc], "msg": msg, "type": kind, **extra}
    return web.json_response({"detail": [item]}, status=422)


def _infra_error(status: int, detail: str, error_type: str) -> web.Response:
    return web.json_response(
        {"detail": detail, "error_type": error_type},
        status=status,
        headers={"X-Fal-Error-Type": error_type},
    )


def _image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return IMAGE_SIZE_PRESETS["auto"]
    if isinstance(value, str):
        return IMAGE_SIZE_PRESETS.get(value) or parse_wxh(value)
    if isinstance(value, dict):
        width, height = value.get("width"), value.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return parse_wxh(f"{width}x{height}")
    return None


def _read_input(body: Any, app: str = "") -> dict[str, Any] | web.Response:
    """The inputs the farm understands, or fal's 422 for the first bad one."""
    if not isinstance(body, dict):
        return _detail("body", "Input should be a valid JSON object", "model_attributes_type")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _detail("prompt", "Field required", "missing")
    if is_video_model(app):
        return _read_video(body, prompt, app)
    size = _image_size(body.get("image_size"))
    if size is None:
        return _detail(
            "image_size",
            "Input should be a preset such as 'square_hd', {width, height} or 'WxH'",
            "value_error",
            input=body.get("image_size"),
        )
    count = body.get("num_images", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
        return _detail("num_images", "Input should be between 1 and 10", "value_error")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return _detail("seed", "Input should be a valid integer", "int_type")
    return {
        "prompt": prompt,
        "width": size[0],
        "height": size[1],
        "num_images": count,
        "seed": seed if seed is not None else prompt_seed(prompt),
        "output_format": body.get("output_format") or "png",
        "quality": body.get("quality"),
    }


def _read_video(body: dict[str, Any], prompt: str, app: str) -> dict[str, Any] | web.Response:
    """A video app's inputs (Veo defaults to 8 s, Seedance to 5 s), or fal's 422."""
    default = 8 if "veo" in app else 5
    video = read_video_input(body, default_seconds=default, model_id=app)
    if isinstance(video, tuple):
        return _detail(video[0], video[1], "value_error", input=body.get(video[0]))
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return _detail("seed", "Input should be a valid integer", "int_type")
    return {**video, "prompt": prompt, "seed": seed if seed is not None else prompt_seed(prompt)}


class FalQueueAPI(FarmAdapter):
    """fal's queue API (submit, status, result, cancel) and sync run API."""

    name = "fal"
    prefix = "/fal"
    sdk_path = "/queue"
    https_only = True  # fal-client hard-codes https://

    def routes(self) -> Sequence[FarmRoute]:
        """Queue routes under ``/fal/queue``, the sync route under ``/fal/run``."""
        requests = "/queue/{app:.+?}/requests/{request_id}"
        return [
            FarmRoute("POST", "/queue/{app_path:.+}", self.submit, generation=True),
            FarmRoute("GET", requests + "/status", self.status),
            FarmRoute("PUT", requests + "/cancel", self.cancel),
            FarmRoute("GET", requests, self.result),
            FarmRoute("POST", "/run/{app_path:.+}", self.run, generation=True),
        ]

    def api_key(self, request: web.Request) -> str | None:
        """fal sends ``Authorization: Key <key>``."""
        return auth_token(request, "Key")

    def describe(self, farm_url: str) -> dict[str, Any]:
        """``base_url``; ``queue_host`` and ``run_host`` for the fal-client environment."""
        host = urlsplit(farm_url).netloc
        return {
            "base_url": self.base_url(farm_url),
            "run_url": f"{farm_url}{self.prefix}/run",
            "queue_host": f"{host}{self.prefix}/queue",
            "run_host": f"{host}{self.prefix}/run",
        }

    def sdk_environment(self, farm_url: str) -> dict[str, str]:
        """``FAL_QUEUE_RUN_HOST`` and ``FAL_RUN_HOST``: where fal-client sends its requests."""
        info = self.describe(farm_url)
        return {"FAL_QUEUE_RUN_HOST": info["queue_host"], "FAL_RUN_HOST": info["run_host"]}

    # -- queue -------------------------------------------------------------------------------

    async def submit(self, call: Call) -> web.StreamResponse:
        """Queue a job; the answer says where to poll it."""
        root = _app_root(call.request.match_info["app_path"])
        if root is None:
            return web.json_response({"detail": "Application not found"}, status=404)
        inputs = _read_input(call.body, call.request.match_info["app_path"])
        if isinstance(inputs, web.Response):
            return inputs
        if "seconds" in inputs:
            call.take_video_time(f"{root}\x00{inputs['prompt']}\x00{inputs['seed']}")
        job = call.submit_job(root, inputs)
        base = self._job_url(call, job)
        return web.json_response(
            {
                "status": "IN_QUEUE",
                "request_id": job.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": job.queue_position(call.jobs.now()),
            },
            headers={"x-fal-request-id": job.id},
        )

    async def status(self, call: Call) -> web.StreamResponse:
        """Where the job is: 202 while queued or running, 200 once completed."""
        job = self._job(call)
        if job is None:
            return web.json_response({"detail": "Request not found"}, status=404)
        state = job.state(call.jobs.now())
        base = self._job_url(call, job)
        logs = _logs(job, state) if call.request.query.get("logs") in ("true", "1") else None
        if state is FarmJobState.QUEUED:
            position = job.queue_position(call.jobs.now())
            body: dict[str, Any] = {"status": "IN_QUEUE", "queue_position": position}
            return web.json_response({**body, "response_url": base}, status=202)
        if state is FarmJobState.RUNNING:
            body = {"status": "IN_PROGRESS", "logs": logs, "response_url": base}
            return web.json_response(body, status=202)
        body = {
            "status": "COMPLETED",
            "logs": logs,
            "metrics": {"inference_time": round(job.generation_s, 3)},
            "response_url": base,
        }
        if state is FarmJobState.CANCELED:
            body |= {"error": "Request was cancelled", "error_type": "client_cancelled"}
        elif job.content_policy:
            body |= {"error": _POLICY_MESSAGE, "error_type": "content_policy_violation"}
        return web.json_response(body)

    async def result(self, call: Call) -> web.StreamResponse:
        """The output of a completed job, or the error it ended with."""
        job = self._job(call)
        if job is None:
            return web.json_response({"detail": "Request not found"}, status=404)
        state = job.state(call.jobs.now())
        if state in (FarmJobState.QUEUED, FarmJobState.RUNNING):
            return web.json_response({"detail": "Request is still in progress"}, status=400)
        if state is FarmJobState.CANCELED:
            return _infra_error(499, "Request was cancelled", "client_cancelled")
        if job.content_policy:
            return _policy_rejection(job.data["prompt"])
        return web.json_response(self._output(call, job.data, job.generation_s))

    async def cancel(self, call: Call) -> web.StreamResponse:
        """Cancel a job that is still queued or running."""
        job = self._job(call)
        if job is None:
            return web.json_response({"status": "NOT_FOUND"}, status=404)
        state = job.state(call.jobs.now())
        if state in (FarmJobState.DONE, FarmJobState.CANCELED):
            return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
        job.canceled_at = call.jobs.now()
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)

    # -- sync run ------------------------------------------------------------------------------

    async def run(self, call: Call) -> web.StreamResponse:
        """Generate and answer the output in the same request."""
        root = _app_root(call.request.match_info["app_path"])
        if root is None:
            return web.json_response({"detail": "Application not found"}, status=404)
        inputs = _read_input(call.body, call.request.match_info["app_path"])
        if isinstance(inputs, web.Response):
            return inputs
        if "seconds" in inputs:
            call.take_video_time(f"{root}\x00{inputs['prompt']}\x00{inputs['seed']}")
        await call.generate()
        if call.content_policy:
            return _policy_rejection(inputs["prompt"])
        return web.json_response(self._output(call, inputs, call.generation_s))

    # -- shapes --------------------------------------------------------------------------------

    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """fal's shapes: ``{"detail": ...}``, plus ``error_type`` for infrastructure errors."""
        if error.kind is ErrorKind.RATE_LIMITED:
            return web.json_response(
                {"detail": "Rate limit exceeded: too many requests for this key."}, status=429
            )
        if error.kind is ErrorKind.UNAUTHORIZED:
            return web.json_response(
                {"detail": "Authentication is required to access this application."},
                status=401,
            )
        if error.kind is ErrorKind.UNAVAILABLE:
            detail = "fal is unavailable (mock outage)"
            return _infra_error(503, detail, "runner_scheduling_failure")
        error_type = _ERROR_TYPES.get(error.status, "runner_scheduling_failure")
        return _infra_error(error.status, f"Injected error: {error_type}", error_type)

    def _job(self, call: Call) -> FarmJob | None:
        info = call.request.match_info
        job = call.jobs.get(info["request_id"])
        if job is None or job.app != _app_root(info["app"]):
            return None
        return job

    def _job_url(self, call: Call, job: FarmJob) -> str:
        return f"{call.origin}{self.prefix}/queue/{job.app}/requests/{job.id}"

    @staticmethod
    def _output(call: Call, inputs: dict[str, Any], generation_s: float) -> dict[str, Any]:
        prompt, seed = inputs["prompt"], inputs["seed"]
        if "seconds" in inputs:
            url, video = call.video(
                prompt, seed, inputs["width"], inputs["height"], inputs["seconds"]
            )
            return {
                "video": {
                    "url": url,
                    "content_type": "video/mp4",
                    "file_name": f"{video.digest}.mp4",
                    "file_size": video.size,
                },
                "seed": seed,
            }
        images = call.images(prompt, seed, inputs["width"], inputs["height"], inputs["num_images"])
        return {
            "images": [
                {
                    "url": image.url,
                    "content_type": "image/png",
                    "file_name": f"{image.digest}.png",
                    "file_size": len(image.png()),
                    "width": image.width,
                    "height": image.height,
                }
                for image in images
            ],
            "seed": seed,
            "has_nsfw_concepts": [False] * len(images),
            "prompt": prompt,
            "timings": {"inference": round(generation_s, 3)},
        }


_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)


def _policy_rejection(prompt: str) -> web.Response:
    """fal's 422 for a prompt its content checker refused."""
    response = _detail(
        "prompt",
        _POLICY_MESSAGE,
        "content_policy_violation",
        url="https://docs.fal.ai/errors#content_policy_violation",
        ctx={"extra_info": "prompt flagged by the mock provider farm"},
        input=prompt,
    )
    response.headers["X-Fal-Retryable"] = "false"
    return response


def _logs(job: FarmJob, state: FarmJobState) -> list[dict[str, Any]]:
    """A line or two of runner logs, as fal returns with ``?logs=true``."""
    lines = [{"message": "Generating image", "level": "INFO", "source": "user"}]
    if state in (FarmJobState.DONE, FarmJobState.CANCELED):
        lines.append({"message": "Done", "level": "INFO", "source": "user"})
    return [{**line, "timestamp": job.created_at()} for line in lines]
