"""OpenAI Images API: one synchronous ``POST {base}/images/generations``.

GPT image models always answer base64; DALL·E models answer a URL unless asked for base64.
Moderation refusals (``moderation_blocked``, ``content_policy_violation``) are ContentRejected;
exhausted quota is AuthFailed (no point retrying, fail over); the rest is the default mapping.
"""

from __future__ import annotations

from imagerouter import (
    AuthFailed,
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

_GPT_QUALITY = {
    "auto": "auto",
    "low": "low",
    "medium": "medium",
    "standard": "medium",
    "high": "high",
    "hd": "high",
}
_DALLE_QUALITY = {"high": "hd", "hd": "hd"}
_QUOTA_CODES = {"insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached"}
_MODERATION_CODES = {"moderation_blocked", "content_policy_violation"}


class OpenAIProvider(Provider):
    """OpenAI's own Images API."""

    provider_id = "openai"
    key_env_var = "OPENAI_API_KEY"
    base_url_env_var = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"

    async def generate(self, request: ImageRequest, ctx: CallContext) -> ProviderOutput:
        body: dict[str, object] = {
            "model": ctx.provider_model,
            "prompt": request.prompt,
            "n": request.n,
            "size": request.size,
        }
        if ctx.provider_model.startswith("dall-e"):
            body.update(
                quality=_DALLE_QUALITY.get(request.quality, "standard"), response_format="b64_json"
            )
        else:
            body.update(quality=_GPT_QUALITY[request.quality], output_format=request.output_format)
        answer = await self.request_json(
            ctx, "POST", f"{self.base_url}/images/generations", json_body=body
        )
        content_type = f"image/{request.output_format}"
        images = [
            GeneratedImage(
                url=item.get("url"),
                b64_json=item.get("b64_json"),
                content_type=content_type,
                width=request.dimensions[0],
                height=request.dimensions[1],
            )
            for item in answer.body.get("data") or []
            if isinstance(item, dict) and (item.get("url") or item.get("b64_json"))
        ]
        if not images:
            raise ProviderUnavailable("answer held no images", provider=self.name, status=200)
        return ProviderOutput(
            images, answer.headers.get("x-request-id"), {"usage": answer.body.get("usage")}
        )

    def classify(self, answer: HttpAnswer) -> ProviderError:
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        message = self.error_message(answer)
        if code in _MODERATION_CODES:
            return ContentRejected(message, provider=self.name, status=answer.status)
        if code in _QUOTA_CODES:
            return AuthFailed(message, provider=self.name, status=answer.status)
        return super().classify(answer)

    def error_message(self, answer: HttpAnswer) -> str:
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return f"HTTP {answer.status} {error.get('code') or ''}: {error['message'][:300]}"
        return super().error_message(answer)


@hookimpl
def register_providers(register):
    register(OpenAIProvider)


@hookimpl
def register_farm_adapters(register):
    from imagerouter_openai_farm import OpenAIImagesAPI  # the mock API: tests and load tests

    register(OpenAIImagesAPI())
