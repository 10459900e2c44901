"""The unified request and result shapes: pydantic at the edges, dataclasses inside."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Attempt",
    "AttemptEvent",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "ProviderOutput",
    "Quality",
    "parse_size",
]

Quality = Literal["auto", "low", "medium", "high", "standard", "hd"]
OutputFormat = Literal["png", "jpeg", "webp"]

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
#: Longest side and largest pixel count we accept (gpt-image-2's limit is 3840x2160).
MAX_SIDE, MAX_PIXELS = 3840, 3840 * 2160


def parse_size(size: str) -> tuple[int, int]:
    """Return (width, height) of a ``WxH`` size; ``auto`` means 1024x1024."""
    if size == "auto":
        return 1024, 1024
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"size must be 'auto' or WIDTHxHEIGHT, got {size!r}")
    return int(match[1]), int(match[2])


class ImageRequest(BaseModel):
    """What a client asks for, whatever provider ends up serving it.

    Numbers are strict: ``"n": true``, ``"n": "2"`` and ``"n": 2.0`` are refused, not coerced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200, description="Catalog model name or alias.")
    prompt: str = Field(min_length=1, max_length=32_000)
    size: str = Field(default="1024x1024", description="'auto' or WIDTHxHEIGHT.")
    quality: Quality = "auto"
    n: int = Field(default=1, ge=1, le=10, strict=True)
    output_format: OutputFormat = "png"
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque; echoed back.")
    webhook_url: str | None = Field(default=None, max_length=2048)

    @field_validator("size")
    @classmethod
    def _check_size(cls, size: str) -> str:
        width, height = parse_size(size)
        if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
            raise ValueError(f"size {size} is larger than {MAX_SIDE}px or {MAX_PIXELS} pixels")
        if min(width, height) < 64:
            raise ValueError(f"size {size} is smaller than 64px on a side")
        return size

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
    """One output image: a URL the client can fetch, or the bytes inline as base64."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    b64_json: str | None = None
    content_type: str = "image/png"
    width: int | None = None
    height: int | None = None


@dataclass(slots=True)
class ProviderOutput:
    """What a provider plugin's ``generate`` returns: the images and the provider's own id."""

    images: list[GeneratedImage]
    provider_request_id: str | None = None
    #: Anything provider-specific worth keeping (timings, revised prompt, usage).
    extra: dict[str, Any] = field(default_factory=dict)


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
        """A JSON-ready dict."""
        return asdict(self)


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
