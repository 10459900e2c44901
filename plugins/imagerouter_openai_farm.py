"""OpenAI Images for the mock farm, wire-compatible: ``POST {prefix}/v1/images/generations``;
registered by the OpenAI plugin's ``register_farm_adapters`` hook.

Point the SDK at ``base_url = farm.base_url("openai")`` (``http://127.0.0.1:PORT/openai/v1``).

- GPT image models (anything not ``dall-e-*``) always answer ``b64_json``, with ``usage``,
  ``size``, ``quality``, ``output_format`` and ``background``.
- ``dall-e-*`` answers ``url`` (on the farm's image host) unless ``response_format`` is
  ``b64_json``, plus ``revised_prompt``.
- Errors are ``{"error": {"message", "type", "param", "code"}}``: 429 ``rate_limit_exceeded``
  (type ``requests``), 400 ``moderation_blocked`` (GPT image) or ``content_policy_violation``
  (DALL·E), 401 ``invalid_api_key``, 5xx ``server_error``, 400 ``missing_required_parameter``
  when ``prompt`` is missing, 400 ``invalid_value`` naming ``model``, ``size``, ``quality`` or
  ``output_format`` for one the model does not take (gpt-image-2: any WxH of sides multiple of
  16, at most 3:1 and 3840x2160; the other GPT image models ``auto``, 1024x1024, 1536x1024,
  1024x1536; DALL·E its own sizes and ``standard``/``hd``), and 400 ``unknown_parameter`` for
  ``response_format`` on a GPT image model (which always answers base64).
- Every answer carries ``x-request-id`` and ``openai-processing-ms``; with a rate limit, also
  ``x-ratelimit-{limit,remaining,reset}-requests`` (the reset as a Go duration, ``6m0s``).
  429s carry ``retry-after`` and ``retry-after-ms``.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from mockproviders import Call, ErrorKind, FarmAdapter, FarmError, FarmRoute
from mockproviders.bucket import go_duration
from mockproviders.images import parse_wxh, prompt_seed

__all__ = ["OpenAIImagesAPI"]

#: Output tokens of one 1024x1024 image by quality (gpt-image-1's published table).
_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160}


#: The models the Images API serves (the SDK still takes the retired ones' names).
_MODELS = {
    "gpt-image-2",
    "gpt-image-1.5",
    "gpt-image-1",
    "gpt-image-1-mini",
    "dall-e-2",
    "dall-e-3",
}
_FIXED_SIZES = {
    "gpt": {"auto", "1024x1024", "1536x1024", "1024x1536"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
}
_SIZE_RULES = {
    "gpt": "Supported values are: 'auto', '1024x1024', '1536x1024' and '1024x1536'.",
    "gpt-image-2": "Supported values are 'auto' or WIDTHxHEIGHT with both sides multiples of "
    "16, an aspect ratio of at most 3:1 and at most 3840x2160.",
    "dall-e-2": "Supported values are: '256x256', '512x512' and '1024x1024'.",
    "dall-e-3": "Supported values are: '1024x1024', '1792x1024' and '1024x1792'.",
}
_QUALITIES = {
    "gpt": {"auto", "low", "medium", "high"},
    "gpt-image-2": {"auto", "low", "medium", "high"},
    "dall-e-2": {"standard"},
    "dall-e-3": {"standard", "hd"},
}
_OUTPUT_FORMATS = {"png", "jpeg", "webp"}


def _family(model: str) -> str:
    """Which rules a model's options follow: its own (DALL·E, gpt-image-2) or the GPT image
    models' fixed sizes."""
    return model if model in ("dall-e-2", "dall-e-3", "gpt-image-2") else "gpt"


def _size_served(model: str, text: str, size: tuple[int, int]) -> bool:
    """Is ``text`` a size ``model`` makes? gpt-image-2 takes any WxH of sides multiple of 16,
    at most 3:1 and 3840x2160 (the SDK's docstring); the others a fixed list."""
    family = _family(model)
    if family != "gpt-image-2":
        return text in _FIXED_SIZES[family]
    width, height = size
    return (
        width % 16 == 0
        and height % 16 == 0
        and max(width, height) <= 3 * min(width, height)
        and max(width, height) <= 3840
        and width * height <= 3840 * 2160
    )


def _refused_option(model: str, body: dict[str, Any]) -> web.Response | None:
    """OpenAI's 400 for a quality, output format or response format ``model`` does not take."""
    family = _family(model)
    quality = body.get("quality")
    if quality is not None and quality not in _QUALITIES[family]:
        served = ", ".join(f"'{q}'" for q in sorted(_QUALITIES[family]))
        return _invalid(f"Invalid value: '{quality}'. Supported values are: {served}.", "quality")
    if family == "dall-e-2" or family == "dall-e-3":
        return None
    output_format = body.get("output_format")
    if output_format is not None and output_format not in _OUTPUT_FORMATS:
        return _invalid(
            f"Invalid value: '{output_format}'. Supported values are: 'png', 'jpeg' and 'webp'.",
            "output_format",
        )
    if "response_format" in body:  # GPT image models always answer base64
        return _invalid(
            "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter"
        )
    return None


def _error_body(message: str, kind: str, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _invalid(message: str, param: str, code: str = "invalid_value") -> web.Response:
    return web.json_response(_error_body(message, "invalid_request_error", code, param), status=400)


class OpenAIImagesAPI(FarmAdapter):
    """The OpenAI Images API (generations)."""

    name = "openai"
    prefix = "/openai"
    sdk_path = "/v1"
    retry_after_ms = True
    budget_headers = True

    def routes(self) -> Sequence[FarmRoute]:
        """``POST /v1/images/generations``."""
        return [FarmRoute("POST", "/v1/images/generations", self.generate, generation=True)]

    async def generate(self, call: Call) -> web.StreamResponse:
        """Validate like OpenAI, take the generation time, answer the images."""
        body = call.body
        if not isinstance(body, dict):
            return _invalid("We could not parse the JSON body of your request.", "body")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _invalid(
                "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
            )
        model = str(body.get("model") or "gpt-image-1")
        if model not in _MODELS:
            supported = ", ".join(f"'{name}'" for name in sorted(_MODELS))
            return _invalid(
                f"Invalid value: '{model}'. Supported values are: {supported}.", "model"
            )
        dalle = model.startswith("dall-e")
        count = body.get("n", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
            return _invalid(f"Invalid 'n': {count!r}; expected an integer from 1 to 10.", "n")
        if model == "dall-e-3" and count != 1:
            return _invalid("dall-e-3 only supports n=1.", "n")
        size_text = str(body.get("size") or ("1024x1024" if dalle else "auto"))
        size = (1024, 1024) if size_text == "auto" else parse_wxh(size_text)
        if size is None or not _size_served(model, size_text, size):
            return _invalid(f"Invalid value: '{size_text}'. {_SIZE_RULES[_family(model)]}", "size")
        refused = _refused_option(model, body)
        if refused is not None:
            return refused
        if call.content_policy:
            return self._rejected(dalle)
        await call.generate()
        width, height = size
        images = call.images(prompt, prompt_seed(prompt), width, height, count)
        if dalle:
            b64 = body.get("response_format") == "b64_json"
            data = [
                {"b64_json": base64.b64encode(image.png()).decode()} if b64 else {"url": image.url}
                for image in images
            ]
            for item in data:
                item["revised_prompt"] = f"{prompt} (as imagined by the mock provider farm)"
            return web.json_response({"created": int(time.time()), "data": data})
        quality = str(body.get("quality") or "auto")
        if quality not in _TOKENS_1024:  # auto
            quality = "medium"
        data = [{"b64_json": base64.b64encode(image.png()).decode()} for image in images]
        return web.json_response(
            {
                "created": int(time.time()),
                "data": data,
                "background": body.get("background") or "opaque",
                "output_format": body.get("output_format") or "png",
                "quality": quality,
                "size": f"{width}x{height}",
                "usage": _usage(prompt, quality, width, height, count),
            }
        )

    @staticmethod
    def _rejected(dalle: bool) -> web.Response:
        if dalle:
            body = _error_body(
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            )
        else:
            body = _error_body(
                "Your request was rejected by the safety system. If you believe this is an "
                "error, contact us at help.openai.com and include the request ID. "
                "safety_violations=[sexual].",
                "image_generation_user_error",
                "moderation_blocked",
            )
        return web.json_response(body, status=400)

    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """OpenAI's ``{"error": {...}}`` for the farm's errors."""
        if error.kind is ErrorKind.RATE_LIMITED:
            wait = error.retry_after_s
            again = f" Please try again in {go_duration(wait)}." if wait else ""
            limit = f"{call.bucket.limit_rpm:g}" if call.bucket else "5"
            body = _error_body(
                "Rate limit exceeded for images per minute in organization org-mockfarm. "
                f"Limit: {limit}/1min.{again}",
                "requests",
                "rate_limit_exceeded",
            )
        elif error.kind is ErrorKind.UNAUTHORIZED:
            key = call.key or ""
            shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            body = _error_body(
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        else:
            body = _error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
        return web.json_response(body, status=error.status)

    def decorate(self, response: web.StreamResponse, call: Call) -> None:
        """``x-request-id`` and ``openai-processing-ms`` (the farm adds ``x-ratelimit-*``)."""
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        response.headers["openai-processing-ms"] = str(call.elapsed_ms())


def _usage(prompt: str, quality: str, width: int, height: int, count: int) -> dict[str, Any]:
    """Token usage shaped like GPT image models report it."""
    text_tokens = max(1, math.ceil(len(prompt) / 4))
    output = math.ceil(_TOKENS_1024[quality] * width * height / (1024 * 1024)) * count
    return {
        "input_tokens": text_tokens,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
        "output_tokens": output,
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
        "total_tokens": text_tokens + output,
    }
