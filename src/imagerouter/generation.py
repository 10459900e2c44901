"""The unified request and result shapes: pydantic at the edges, dataclasses inside."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from imagerouter.preferences import RoutingPreferences

__all__ = [
    "Attempt",
    "AttemptEvent",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "MediaKind",
    "ProviderOutput",
    "Quality",
    "check_prompt",
    "check_size",
    "output_problem",
    "parse_size",
]

Quality = Literal["auto", "low", "medium", "high", "standard", "hd"]
OutputFormat = Literal["png", "jpeg", "webp"]
#: What a catalog model makes.
MediaKind = Literal["image", "video"]
#: The request fields only a video model reads (an image model refuses each one set).
VIDEO_FIELDS = ("duration", "aspect_ratio", "resolution", "generate_audio", "image_url")
#: Longest ``image_url``: room for a data URL of a 2 MiB image (base64 is 4/3 of it).
MAX_IMAGE_URL = 2 * 1024 * 1024 * 4 // 3 + 64

#: ``WIDTHxHEIGHT`` in ASCII digits without leading zeros (``\d`` would take any script's digits).
_SIZE = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")
#: Longest side and largest pixel count we accept (gpt-image-2's limit is 3840x2160).
MAX_SIDE, MAX_PIXELS = 3840, 3840 * 2160
#: Shortest side we accept.
MIN_SIDE = 64


def parse_size(size: str) -> tuple[int, int]:
    """Return (width, height) of a ``WxH`` size; ``auto`` means 1024x1024."""
    if size == "auto":
        return 1024, 1024
    match = _SIZE.fullmatch(size)
    if not match:
        raise ValueError(
            "size must be 'auto' or WIDTHxHEIGHT in ASCII digits without leading zeros "
            f"(e.g. 1024x1024), got {size!r}"
        )
    return int(match[1]), int(match[2])


def check_size(size: str) -> str:
    """``size`` checked against the bounds and normalised (``auto`` or ``WxH``); a
    :class:`ValueError` saying precisely which bound a dimension breaks otherwise."""
    width, height = parse_size(size)
    if size == "auto":
        return size
    for side, value in (("width", width), ("height", height)):
        if value < MIN_SIDE:
            raise ValueError(f"{side} {value} is below the minimum {MIN_SIDE}")
        if value > MAX_SIDE:
            raise ValueError(f"{side} {value} is above the maximum {MAX_SIDE}")
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"{width}x{height} is {width * height} pixels, above the maximum {MAX_PIXELS} "
            f"({MAX_SIDE}x{MAX_PIXELS // MAX_SIDE})"
        )
    return f"{width}x{height}"


def check_prompt(prompt: str) -> str:
    """``prompt`` unchanged, unless it is only whitespace: as empty as ``""``, which no
    provider would take, and which would be charged before it failed."""
    if prompt.isspace():
        raise PydanticCustomError("prompt", "must contain more than whitespace")
    return prompt


def check_finite(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` unchanged, unless it holds a NaN or an infinity at any depth (Python's JSON
    reader takes ``NaN`` and ``1e400``): JSON has no such number, so it would be echoed back as
    ``null``, changed. The error's context carries where (``loc``, below the field)."""
    stack: list[tuple[Any, str, tuple[str | int, ...]]] = [(value, "", ())]
    while stack:
        item, path, loc = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                where = f" at {path.lstrip('.')}" if path else ""
                raise PydanticCustomError(
                    "finite_number", f"{item} is not a number JSON can hold{where}", {"loc": loc}
                )
        elif isinstance(item, dict):
            stack.extend((child, f"{path}.{key}", (*loc, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend(
                (child, f"{path}[{index}]", (*loc, index)) for index, child in enumerate(item)
            )
    return value


class ImageRequest(BaseModel):
    """What a client asks for, whatever provider ends up serving it.

    Numbers are strict: ``"n": true``, ``"n": "2"`` and ``"n": 2.0`` are refused, not coerced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200, description="Catalog model name or alias.")
    prompt: str = Field(min_length=1, max_length=32_000)
    size: str = Field(
        default="1024x1024",
        max_length=32,
        description="'auto' or WIDTHxHEIGHT in ASCII digits without leading zeros; each side "
        "64 to 3840 px, at most 3840x2160 pixels in all.",
    )
    quality: Quality = "auto"
    n: int = Field(default=1, ge=1, le=10, strict=True)
    output_format: OutputFormat = "png"
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque; echoed back.")
    webhook_url: str | None = Field(default=None, max_length=2048)
    routing: RoutingPreferences | None = Field(
        default=None, description="Provider preferences for this job (see README, Routing)."
    )
    # --- video models only (the catalog model's ``video`` capabilities fill what is unset) ---
    duration: int | None = Field(
        default=None, ge=1, le=120, strict=True, description="Video: seconds of output."
    )
    aspect_ratio: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]?:[1-9][0-9]?$",
        description="Video: '16:9', '9:16', ... (or give size, e.g. 1280x720).",
    )
    resolution: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]{2,3}p$", description="Video: '480p', '720p', ..."
    )
    generate_audio: bool | None = Field(
        default=None, strict=True, description="Video: with a sound track (models that can)."
    )
    image_url: str | None = Field(
        default=None,
        max_length=MAX_IMAGE_URL,
        pattern=r"^(https?://|data:image/)",
        description="Video: the first frame (image to video), an http(s) or data: URL.",
    )

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, prompt: str) -> str:
        return check_prompt(prompt)

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        return check_finite(metadata) if metadata else metadata

    @field_validator("size")
    @classmethod
    def _check_size(cls, size: str) -> str:
        try:
            return check_size(size)
        except ValueError as exc:  # without pydantic's "Value error, " prefix
            raise PydanticCustomError("size", str(exc).removeprefix("size ")) from None

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return parse_size(self.size)

    @property
    def tier(self) -> Literal["low", "standard", "high"]:
        """Quality folded into the three price tiers the catalog uses."""
        if self.quality == "low":
            return "low"
        if self.quality in ("high", "hd"):
            return "high"
        return "standard"


class GeneratedImage(BaseModel):
    """One output (an image, or a video when ``content_type`` is ``video/*``): a URL the
    client can fetch, or the bytes inline as base64."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    b64_json: str | None = None
    content_type: str = "image/png"
    width: int | None = None
    height: int | None = None
    #: Seconds of a video output.
    duration: float | None = None


@dataclass(slots=True)
class ProviderOutput:
    """What a provider plugin's ``generate`` returns: the images and the provider's own id."""

    images: list[GeneratedImage]
    provider_request_id: str | None = None
    #: Anything provider-specific worth keeping (timings, revised prompt, usage).
    extra: dict[str, Any] = field(default_factory=dict)


def output_problem(output: object) -> str | None:
    """What is wrong with what a plugin's ``generate`` returned, or None: a
    :class:`ProviderOutput` of at least one :class:`GeneratedImage`, each with a URL or its
    bytes. The router treats a wrong answer as it treats an unclassified exception."""
    if not isinstance(output, ProviderOutput):
        return f"returned {type(output).__name__}, not a ProviderOutput"
    if not output.images:
        return "returned no images"
    for image in output.images:
        if not isinstance(image, GeneratedImage):
            return f"returned an image of type {type(image).__name__}, not a GeneratedImage"
        if not (image.url or image.b64_json):
            return "returned an image with neither a url nor b64_json"
    return None


@dataclass(slots=True)
class Attempt:
    """One call (or one decision not to call) to one provider for one job.

    ``outcome`` is ``ok``, ``error``, ``skipped`` or ``canceled``; a skipped candidate has
    ``reason`` set (breaker open, cooldown, budget, …) and no latency; a canceled call was
    abandoned in flight (it lost a hedge, or the job was cancelled).
    """

    provider: str
    outcome: Literal["ok", "error", "skipped", "canceled"]
    started_at: float = 0.0  # unix seconds
    latency_ms: float | None = None
    error_class: str | None = None
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every field is a scalar: no deep copy, unlike ``asdict``)."""
        return {
            "provider": self.provider,
            "outcome": self.outcome,
            "started_at": self.started_at,
            "latency_ms": self.latency_ms,
            "error_class": self.error_class,
            "error": self.error,
            "status": self.status,
            "retry_after": self.retry_after,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """An attempt as it happens, with the catalog model of its job (for metrics and logs)."""

    model: str
    attempt: Attempt


class ImageResult(BaseModel):
    """A finished generation: the images, who made them, and every attempt on the way."""

    model_config = ConfigDict(extra="forbid")

    model: str
    provider: str
    provider_model: str
    images: list[GeneratedImage]
    provider_request_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    attempts: list[dict[str, Any]] = Field(default_factory=list)
