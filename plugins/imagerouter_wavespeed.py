"""WaveSpeed AI v3: submit ``POST {base}/api/v3/{model}``, poll ``/api/v3/predictions/{id}/result``.

Every answer is wrapped as ``{"code", "message", "data"}``. A task that fails on the provider
side shows ``status: failed`` with an ``error`` text; an NSFW / content-policy failure is
ContentRejected, any other failure ProviderUnavailable.
"""

from __future__ import annotations

from imagerouter import (
    CallContext,
    ContentRejected,
    GeneratedImage,
    HttpAnswer,
    ImageRequest,
    Provider,
    ProviderError,
    ProviderOutput,
    ProviderUnavailable,
    hookimpl,
)

_TERMINAL = ("completed", "failed")
_REJECTION_WORDS = ("nsfw", "content policy", "content_policy", "moderation", "safety")


class WaveSpeedProvider(Provider):
    """WaveSpeed AI's v3 prediction API."""

    provider_id = "wavespeed"
    key_env_var = "WAVESPEED_API_KEY"
    base_url_env_var = "WAVESPEED_BASE_URL"
    default_base_url = "https://api.wavespeed.ai"

    async def generate(self, request: ImageRequest, ctx: CallContext) -> ProviderOutput:
        width, height = request.dimensions
        if request.duration is not None:
            body = _video_body(request, ctx.provider_model)
        else:
            body = _image_body(request)
        base = f"{self.base_url}/api/v3"
        data = self._data(
            await self.request_json(ctx, "POST", f"{base}/{ctx.provider_model}", json_body=body)
        )
        task_id = data.get("id")
        if not task_id:
            raise ProviderUnavailable("submit answer lacks data.id", provider=self.name)
        result_url = f"{base}/predictions/{task_id}/result"
        if data.get("status") not in _TERMINAL:
            async for _ in self.poll_waits(ctx):
                data = self._data(await self.poll_json(ctx, "GET", result_url))
                ctx.progress(str(data.get("status")))
                if data.get("status") in _TERMINAL:
                    break
        if data["status"] == "failed":
            raise self._task_failure(str(data.get("error") or "task failed"), data)
        video = {"content_type": "video/mp4", "duration": request.duration}
        images = [
            GeneratedImage(
                url=url, width=width, height=height, **(video if request.duration else {})
            )
            for url in data.get("outputs") or []
            if isinstance(url, str)
        ]
        if not images:
            raise ProviderUnavailable("completed task held no outputs", provider=self.name)
        return ProviderOutput(images, str(task_id), {"timings": data.get("timings")})

    def _data(self, answer: HttpAnswer) -> dict:
        code, data = answer.body.get("code", 200), answer.body.get("data")
        if isinstance(code, int) and code >= 400:  # an error inside a 200 wrapper
            raise self.classify(HttpAnswer(code, answer.headers, answer.body, answer.text))
        if not isinstance(data, dict):
            raise ProviderUnavailable("answer lacks its data object", provider=self.name)
        return data

    def _task_failure(self, error: str, data: dict) -> ProviderError:
        nsfw = any(data.get("has_nsfw_contents") or [])
        if nsfw or any(word in error.lower() for word in _REJECTION_WORDS):
            return ContentRejected(error[:300], provider=self.name)
        return ProviderUnavailable(f"task failed: {error[:300]}", provider=self.name)


def _image_body(request: ImageRequest) -> dict[str, object]:
    """An image model's input."""
    width, height = request.dimensions
    body: dict[str, object] = {
        "prompt": request.prompt,
        "size": f"{width}*{height}",
        "num_images": request.n,
    }
    if request.quality != "auto":
        body["quality"] = {"standard": "medium", "hd": "high"}.get(request.quality, request.quality)
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def _video_body(request: ImageRequest, model: str) -> dict[str, object]:
    """A video model's input: seconds as a number; Seedance's resolution is in its model id
    (one endpoint per resolution) and it is silent, Veo takes ``resolution`` and
    ``generate_audio``; a first frame goes in ``image``."""
    body: dict[str, object] = {
        "prompt": request.prompt,
        "duration": request.duration,
        "aspect_ratio": request.aspect_ratio,
    }
    if "veo" in model:
        body["resolution"] = request.resolution
        body["generate_audio"] = bool(request.generate_audio)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.image_url is not None:
        body["image"] = request.image_url
    return body


@hookimpl
def register_providers(register):
    register(WaveSpeedProvider)


@hookimpl
def register_farm_adapters(register):
    from imagerouter_wavespeed_farm import WaveSpeedAPI  # the mock API: tests and load tests

    register(WaveSpeedAPI())
