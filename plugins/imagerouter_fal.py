"""fal.ai queue API: submit, poll the status URL, fetch the result, cancel on deadline.

The submit answer names the status, result and cancel URLs; we use them verbatim. fal reports
moderation as a 422 whose ``detail`` holds a ``content_policy_violation``, and infrastructure
failures with an ``error_type`` (also in ``X-Fal-Error-Type``).
"""

from __future__ import annotations

import asyncio
import contextlib

from imagerouter import (
    CallContext,
    ContentRejected,
    GeneratedImage,
    HttpAnswer,
    ImageRequest,
    Provider,
    ProviderError,
    ProviderOutput,
    ProviderTimeout,
    ProviderUnavailable,
    hookimpl,
)

_TIMEOUT_TYPES = {"request_timeout", "startup_timeout"}
CANCEL_TIMEOUT_S = 2.0


class FalProvider(Provider):
    """fal.ai's queue (``queue.fal.run``)."""

    provider_id = "fal"
    key_env_var = "FAL_KEY"
    base_url_env_var = "FAL_QUEUE_URL"
    default_base_url = "https://queue.fal.run"
    auth_scheme = "Key"

    async def generate(self, request: ImageRequest, ctx: CallContext) -> ProviderOutput:
        if request.duration is not None:
            body = _video_body(request, ctx.provider_model)
        else:
            body = _image_body(request)
        submitted = await self.request_json(
            ctx, "POST", f"{self.base_url}/{ctx.provider_model}", json_body=body
        )
        try:
            urls = {
                key: str(submitted.body[key])
                for key in ("status_url", "response_url", "cancel_url", "request_id")
            }
        except KeyError as exc:
            raise ProviderUnavailable(f"submit answer lacks {exc}", provider=self.name) from None
        try:
            result = await self._wait_for_result(ctx, urls["status_url"], urls["response_url"])
        except (ProviderTimeout, asyncio.CancelledError):
            await self._cancel(ctx, urls["cancel_url"])
            raise
        if request.duration is not None:
            images = _video_output(request, result.body)
        else:
            images = [
                GeneratedImage(
                    url=item["url"],
                    content_type=item.get("content_type", "image/png"),
                    width=item.get("width"),
                    height=item.get("height"),
                )
                for item in result.body.get("images") or []
                if isinstance(item, dict) and item.get("url")
            ]
        if not images:
            what = "images" if request.duration is None else "video"
            raise ProviderUnavailable(f"result held no {what}", provider=self.name, status=200)
        return ProviderOutput(images, urls["request_id"], {"seed": result.body.get("seed")})

    async def _wait_for_result(self, ctx: CallContext, status_url: str, result_url: str):
        async for _ in self.poll_waits(ctx):
            status = (await self.poll_json(ctx, "GET", f"{status_url}?logs=1")).body
            state = status.get("status")
            ctx.progress(str(state), status.get("queue_position"), _last_log(status))
            if state == "COMPLETED":
                return await self.poll_json(ctx, "GET", result_url)
            if state not in ("IN_QUEUE", "IN_PROGRESS"):
                raise ProviderUnavailable(f"unknown queue status {state!r}", provider=self.name)
        raise AssertionError("poll_waits never ends by itself")  # pragma: no cover

    async def _cancel(self, ctx: CallContext, cancel_url: str) -> None:
        """Best effort: tell fal to drop the request so it does not bill for it."""
        cancel_ctx = ctx.lasting(CANCEL_TIMEOUT_S)
        with contextlib.suppress(ProviderError):
            await self.request_json(cancel_ctx, "PUT", cancel_url)

    def classify(self, answer: HttpAnswer) -> ProviderError:
        body = answer.body if isinstance(answer.body, dict) else {}
        detail = body.get("detail")
        message = self.error_message(answer)
        if isinstance(detail, list) and any(
            isinstance(item, dict) and item.get("type") == "content_policy_violation"
            for item in detail
        ):
            return ContentRejected(message, provider=self.name, status=answer.status)
        error_type = body.get("error_type") or answer.headers.get("x-fal-error-type")
        if error_type in _TIMEOUT_TYPES:
            return ProviderTimeout(message, provider=self.name, status=answer.status)
        return super().classify(answer)

    def error_message(self, answer: HttpAnswer) -> str:
        detail = answer.body.get("detail") if isinstance(answer.body, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return f"HTTP {answer.status}: {detail[0].get('msg') or detail[0].get('type')}"
        return super().error_message(answer)


def _image_body(request: ImageRequest) -> dict[str, object]:
    """An image app's input."""
    body: dict[str, object] = {
        "prompt": request.prompt,
        "num_images": request.n,
        "output_format": request.output_format,
    }
    if request.size != "auto":
        width, height = request.dimensions
        body["image_size"] = {"width": width, "height": height}
    if request.quality != "auto":
        body["quality"] = {"standard": "medium", "hd": "high"}.get(request.quality, request.quality)
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def _video_body(request: ImageRequest, app: str) -> dict[str, object]:
    """A video app's input: Veo says its duration as ``"8s"``, Seedance as ``"5"``; only Veo
    takes ``generate_audio`` (Seedance 1.0 is silent)."""
    veo = "veo" in app
    body: dict[str, object] = {
        "prompt": request.prompt,
        "duration": f"{request.duration}s" if veo else str(request.duration),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
    }
    if veo or request.generate_audio:
        body["generate_audio"] = bool(request.generate_audio)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.image_url is not None:
        body["image_url"] = request.image_url
    return body


def _video_output(request: ImageRequest, body: dict) -> list[GeneratedImage]:
    """``{"video": {"url", "content_type", …}}`` as one output."""
    video = body.get("video")
    if not isinstance(video, dict) or not video.get("url"):
        return []
    width, height = request.dimensions
    return [
        GeneratedImage(
            url=video["url"],
            content_type=video.get("content_type") or "video/mp4",
            width=width,
            height=height,
            duration=request.duration,
        )
    ]


def _last_log(status: dict) -> str | None:
    """The newest runner log line of a status answer, if it carries any."""
    logs = status.get("logs")
    if isinstance(logs, list) and logs and isinstance(logs[-1], dict):
        message = logs[-1].get("message")
        return message if isinstance(message, str) else None
    return None


@hookimpl
def register_providers(register):
    register(FalProvider)


@hookimpl
def register_farm_adapters(register):
    from imagerouter_fal_farm import FalQueueAPI  # the mock API: tests and load tests

    register(FalQueueAPI())
