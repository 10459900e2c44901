"""How OpenAI's Images API answers each model family, as data: the OpenAI-compatible route
looks the requested model name up here (the name the client sent, before catalog aliases, so
that code written for ``dall-e-3`` or ``gpt-image-1`` gets the answer it was written for).

- GPT image models (``gpt-image-*``, ``chatgpt-image-*``): always ``b64_json``; a
  ``response_format`` is refused as OpenAI refuses it (400 ``unknown_parameter``); the answer
  carries ``usage``, ``size``, ``quality``, ``output_format`` and ``background``.
- ``dall-e-3``: ``url`` unless ``response_format`` is ``b64_json``, with ``revised_prompt``
  (the prompt as sent: imagerouter rewrites no prompt); ``n`` must be 1.
- ``dall-e-2``: ``url`` unless ``response_format`` is ``b64_json``.
- A parameter OpenAI's ``images.generate`` does not know (a typo such as ``qualty``) is
  refused as OpenAI refuses it (400 ``unknown_parameter``) before anything is charged: ignored,
  it would have priced the job at the defaults. Those OpenAI knows and imagerouter does not
  use (``moderation``, ``output_compression``, ``user``, …) are accepted and ignored.
- ``quality`` (and, for DALL·E, ``size``) outside what OpenAI takes for the family is refused
  with OpenAI's ``invalid_value`` message.
- Every other model (FLUX, Nano Banana, …): not OpenAI's, so OpenAI has no rule; imagerouter
  answers like the current GPT image models (``b64_json``, so code carried over from
  ``gpt-image-1`` works unchanged) but still honours ``response_format: "url"``; ``size`` and
  ``output_format`` are echoed, no ``usage`` (tokens mean nothing there).

``usage`` is an estimate: text tokens are the prompt's characters / 4, output tokens follow
gpt-image-1's published per-image table (low 272, medium 1056, high 4160 for 1024x1024) in
proportion to the pixel count. imagerouter does not bill by tokens; credits are the bill.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from imagerouter.server.errors import ApiError
from imagerouter.server.schemas import OpenAIImageRequest

__all__ = [
    "Family",
    "check_request",
    "estimate_usage",
    "family_of",
    "refuse_unknown_parameters",
    "shown_quality",
]

#: Every parameter of OpenAI's ``images.generate`` (openai 3.57's SDK) and imagerouter's own
#: extension (``routing``): anything else in a body is a client's mistake.
KNOWN_PARAMETERS = frozenset(OpenAIImageRequest.model_fields) | {
    "output_compression",
    "moderation",
    "style",
    "stream",
    "partial_images",
    "safety_identifier",
    "complexity",
    "frame_count",
    "frame_duration_ms",
    "svg",
}

ResponseFormat = Literal["url", "b64_json"]


@dataclass(frozen=True, slots=True)
class Family:
    """One model family's answer rules."""

    name: str
    default_format: ResponseFormat
    takes_response_format: bool
    usage: bool
    #: Response fields echoed from the request (OpenAI sends these for GPT image models).
    echoed: tuple[str, ...]
    revised_prompt: bool = False
    max_n: int = 10
    #: The values OpenAI takes for these fields (None: whatever the catalog's model takes).
    qualities: tuple[str, ...] | None = None
    sizes: tuple[str, ...] | None = None

    def allowed(self, field: str) -> tuple[str, ...] | None:
        """The values OpenAI accepts for ``quality`` or ``size`` in this family, if limited."""
        return {"quality": self.qualities, "size": self.sizes}.get(field)


_GPT_IMAGE = Family(
    "gpt-image",
    default_format="b64_json",
    takes_response_format=False,
    usage=True,
    echoed=("size", "quality", "output_format", "background"),
    qualities=("low", "medium", "high", "auto"),
)
_DALLE_3 = Family(
    "dall-e-3",
    default_format="url",
    takes_response_format=True,
    usage=False,
    echoed=(),
    revised_prompt=True,
    max_n=1,
    qualities=("standard", "hd"),
    sizes=("1024x1024", "1792x1024", "1024x1792"),
)
_DALLE_2 = Family(
    "dall-e-2",
    default_format="url",
    takes_response_format=True,
    usage=False,
    echoed=(),
    qualities=("standard",),
    sizes=("256x256", "512x512", "1024x1024"),
)
_OTHER = Family(
    "other",
    default_format="b64_json",
    takes_response_format=True,
    usage=False,
    echoed=("size", "output_format"),
)

#: First match wins; a name matching none is :data:`_OTHER`.
_FAMILIES: tuple[tuple[re.Pattern[str], Family], ...] = (
    (re.compile(r"^(gpt-image-|chatgpt-image-)"), _GPT_IMAGE),
    (re.compile(r"^dall-e-3($|-)"), _DALLE_3),
    (re.compile(r"^dall-e-2($|-)"), _DALLE_2),
)

#: gpt-image-1's published output tokens of one 1024x1024 image, by quality.
_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160}
#: Our quality names as OpenAI's response names them.
_SHOWN_QUALITY = {"low": "low", "medium": "medium", "high": "high", "hd": "high"}


def family_of(model: str) -> Family:
    """The answer rules for the model name a client sent."""
    for pattern, family in _FAMILIES:
        if pattern.match(model):
            return family
    return _OTHER


def shown_quality(quality: str) -> str:
    """The quality a GPT image answer reports (``auto`` and ``standard`` render as medium)."""
    return _SHOWN_QUALITY.get(quality, "medium")


def estimate_usage(prompt: str, quality: str, width: int, height: int, n: int) -> dict[str, Any]:
    """OpenAI's ``usage`` object for a GPT image generation, estimated (see the module doc)."""
    text_tokens = max(1, math.ceil(len(prompt) / 4))
    per_image = _TOKENS_1024[shown_quality(quality)] * width * height / (1024 * 1024)
    output = math.ceil(per_image) * n
    return {
        "input_tokens": text_tokens,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
        "output_tokens": output,
        "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
        "total_tokens": text_tokens + output,
    }


def refuse_unknown_parameters(raw: object) -> None:
    """Refuse a body naming a parameter OpenAI does not know, in OpenAI's words."""
    if isinstance(raw, dict):
        for name in raw:
            if name not in KNOWN_PARAMETERS:
                message = f"Unknown parameter: '{name}'."
                raise ApiError(400, "unknown_parameter", message, field=name)


def check_request(body: OpenAIImageRequest, family: Family) -> None:
    """Refuse what OpenAI refuses for this family (an :class:`ApiError` in OpenAI's words),
    before anything is charged."""
    if body.response_format is not None and not family.takes_response_format:
        raise ApiError(
            400,
            "unknown_parameter",
            "Unknown parameter: 'response_format'.",
            field="response_format",
        )
    if body.n is not None and body.n > family.max_n:
        raise ApiError(
            400, "invalid_value", f"{body.model} only supports n={family.max_n}.", field="n"
        )
    for field in ("quality", "size"):
        value, allowed = getattr(body, field), family.allowed(field)
        if value is not None and allowed is not None and value not in allowed:
            raise ApiError(400, "invalid_value", _invalid_value(value, allowed), field=field)
    if body.background == "transparent":
        raise ApiError(
            400,
            "invalid_value",
            "transparent backgrounds are not supported by this router yet; use 'auto' or 'opaque'",
            field="background",
        )


def _invalid_value(value: str, allowed: tuple[str, ...]) -> str:
    """OpenAI's wording: ``Invalid value: 'hd'. Supported values are: 'low', … and 'auto'.``"""
    quoted = [f"'{choice}'" for choice in allowed]
    if len(quoted) <= 2:
        listed = " and ".join(quoted)
    else:
        listed = f"{', '.join(quoted[:-1])}, and {quoted[-1]}"
    return f"Invalid value: '{value}'. Supported values are: {listed}."
