"""Replicate predictions API: create (held briefly with ``Prefer: wait``), poll ``urls.get``,
cancel on deadline.

Official models are created at ``POST /models/{owner}/{name}/predictions``; a catalog model id
with a version (``owner/name:sha``) goes to ``POST /predictions``. ``Prefer: wait=N`` returns a
finished prediction when the model is quick; it is kept short and well inside the deadline,
because a create request that times out leaves us no prediction id to cancel. Replicate
reports safety-checker refusals as a ``failed`` prediction whose error mentions NSFW/sensitive
content (ContentRejected); errors are ``{"title", "detail", "status"}``; 402 (out of credit)
is AuthFailed, like OpenAI's exhausted quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from pydantic import Field

from imagerouter import (
    AuthFailed,
    CallContext,
    ContentRejected,
    GeneratedImage,
    HttpAnswer,
    ImageRequest,
    Provider,
    ProviderError,
    ProviderOptions,
    ProviderOutput,
    ProviderTimeout,
    ProviderUnavailable,
    hookimpl,
)

#: Aspect ratios both flux-dev and nano-banana-pro accept, by their log(width / height).
_RATIOS = {
    f"{w}:{h}": math.log(w / h)
    for w, h in ((1, 1), (16, 9), (21, 9), (3, 2), (2, 3), (4, 5), (5, 4), (3, 4), (4, 3), (9, 16))
}
_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_REJECTION_WORDS = ("nsfw", "sensitive", "safety", "content policy", "flagged")
_RUNNING = ("starting", "processing")
CANCEL_TIMEOUT_S = 2.0
#: Seconds a held create must leave before the deadline, to still get its answer.
WAIT_MARGIN_S = 1.0


class ReplicateOptions(ProviderOptions):
    """Replicate's settings: how long a create may be held open for a finished prediction."""

    prefer_wait_s: int = Field(
        default=1, ge=0, le=60, description="Prefer: wait=N on create; 0 polls from the start."
    )


def aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio nearest to ``width``:``height``."""
    target = math.log(width / height)
    return min(_RATIOS, key=lambda ratio: abs(_RATIOS[ratio] - target))


class ReplicateProvider(Provider):
    """Replicate's HTTP API (``api.replicate.com/v1``)."""

    provider_id = "replicate"
    key_env_var = "REPLICATE_API_TOKEN"
    base_url_env_var = "REPLICATE_BASE_URL"
    default_base_url = "https://api.replicate.com/v1"
    Options = ReplicateOptions

    async def generate(self, request: ImageRequest, ctx: CallContext) -> ProviderOutput:
        inputs: dict[str, object]
        if request.duration is not None:  # a video model (Veo, Seedance on Replicate)
            inputs = {
                "prompt": request.prompt,
                "duration": request.duration,
                "aspect_ratio": request.aspect_ratio,
                "resolution": request.resolution,
            }
            if "veo" in ctx.provider_model:
                inputs["generate_audio"] = bool(request.generate_audio)
            if request.image_url is not None:
                inputs["image"] = request.image_url
        else:
            inputs = {
                "prompt": request.prompt,
                "aspect_ratio": aspect_ratio(*request.dimensions),
                "output_format": _FORMATS[request.output_format],
            }
            if request.n > 1:
                inputs["num_outputs"] = request.n
        if request.seed is not None:
            inputs["seed"] = request.seed
        model, _, version = ctx.provider_model.partition(":")
        url, body = f"{self.base_url}/models/{model}/predictions", {"input": inputs}
        if version:
            url, body = f"{self.base_url}/predictions", {"version": version, "input": inputs}
        wait = min(self.options.prefer_wait_s, math.floor(ctx.remaining() - WAIT_MARGIN_S))
        headers = {"Prefer": f"wait={wait}"} if wait >= 1 else {}
        created = await self.request_json(ctx, "POST", url, json_body=body, headers=headers)
        prediction = created.body
        if not prediction.get("id"):
            raise ProviderUnavailable("create answer lacks an id", provider=self.name)
        try:
            prediction = await self._wait(ctx, prediction)
        except (ProviderTimeout, asyncio.CancelledError):
            await self._cancel(ctx, prediction)
            raise
        output = self._output(prediction)
        if request.duration is not None:
            width, height = request.dimensions
            for video in output.images:
                video.content_type, video.duration = "video/mp4", request.duration
                video.width, video.height = width, height
        return output

    async def _wait(self, ctx: CallContext, prediction: dict) -> dict:
        """Poll ``urls.get`` until the prediction leaves starting/processing."""
        if prediction.get("status") in _RUNNING:
            async for _ in self.poll_waits(ctx):
                prediction = (await self.poll_json(ctx, "GET", self._url(prediction, "get"))).body
                logs = prediction.get("logs")
                last = logs.strip().rsplit("\n", 1)[-1] if isinstance(logs, str) else None
                ctx.progress(str(prediction.get("status")), log=last)
                if prediction.get("status") not in _RUNNING:
                    break
        return prediction

    def _output(self, prediction: dict) -> ProviderOutput:
        status, error = prediction.get("status"), str(prediction.get("error") or "")
        if status == "failed" and any(word in error.lower() for word in _REJECTION_WORDS):
            raise ContentRejected(error[:300], provider=self.name)
        if status != "succeeded":
            message = f"prediction {status}: {error[:300]}" if error else f"prediction {status}"
            raise ProviderUnavailable(message, provider=self.name)
        output = prediction.get("output")
        urls = [output] if isinstance(output, str) else output or []
        images = [GeneratedImage(url=url) for url in urls if isinstance(url, str) and url]
        if not images:
            raise ProviderUnavailable("succeeded prediction held no output", provider=self.name)
        return ProviderOutput(images, prediction["id"], {"metrics": prediction.get("metrics")})

    async def _cancel(self, ctx: CallContext, prediction: dict) -> None:
        """Best effort: stop the prediction so Replicate does not bill for it."""
        cancel_ctx = ctx.lasting(CANCEL_TIMEOUT_S)
        with contextlib.suppress(ProviderError):
            await self.request_json(cancel_ctx, "POST", self._url(prediction, "cancel"))

    def _url(self, prediction: dict, name: str) -> str:
        """The answer's ``urls.get`` / ``urls.cancel``, else the same URL built from the id."""
        suffix = "/cancel" if name == "cancel" else ""
        built = f"{self.base_url}/predictions/{prediction['id']}{suffix}"
        return (prediction.get("urls") or {}).get(name) or built

    def classify(self, answer: HttpAnswer) -> ProviderError:
        if answer.status == 402:
            return AuthFailed(self.error_message(answer), provider=self.name, status=402)
        return super().classify(answer)

    def error_message(self, answer: HttpAnswer) -> str:
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("detail") or body.get("title"):
            text = str(body.get("detail") or body.get("title"))
            return f"HTTP {answer.status}: {text[:300]}"
        return super().error_message(answer)


@hookimpl
def register_providers(register):
    register(ReplicateProvider)


@hookimpl
def register_farm_adapters(register):
    from imagerouter_replicate_farm import ReplicateAPI  # the mock API: tests and load tests

    register(ReplicateAPI())
