"""What one catalog model can make: sizes, image count and output formats.

A request the model cannot serve is refused before it is priced or charged, with an
:class:`~imagerouter.errors.UnsupportedRequest` naming the field (a 422 on the API). The bounds
here are *per model*, inside the global ones :func:`imagerouter.generation.check_size` applies to
every request.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagerouter.errors import UnsupportedRequest
from imagerouter.generation import (
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    ImageRequest,
    OutputFormat,
    parse_size,
)

__all__ = ["Capabilities"]

ALL_FORMATS: tuple[OutputFormat, ...] = ("png", "jpeg", "webp")


class Capabilities(BaseModel):
    """A model's sizes (an exact list, or bounds), most images per request, output formats.

    The defaults are the global request bounds, so a model without a ``capabilities`` table
    accepts whatever any request may ask for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sizes: tuple[str, ...] | None = Field(
        default=None, description="The only WxH sizes served ('auto' means 1024x1024)."
    )
    min_side: int = Field(default=MIN_SIDE, ge=MIN_SIDE, le=MAX_SIDE)
    max_side: int = Field(default=MAX_SIDE, ge=MIN_SIDE, le=MAX_SIDE)
    max_pixels: int = Field(default=MAX_PIXELS, ge=MIN_SIDE * MIN_SIDE, le=MAX_PIXELS)
    max_aspect: float | None = Field(default=None, ge=1, description="Longest / shortest side.")
    multiple_of: int = Field(default=1, ge=1, description="Each side a multiple of this.")
    max_n: int = Field(default=10, ge=1, le=10)
    output_formats: tuple[OutputFormat, ...] = Field(default=ALL_FORMATS, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Capabilities:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is above max_side {self.max_side}")
        for size in self.sizes or ():
            parse_size(size)  # a ValueError naming the bad size
        return self

    def size_summary(self) -> str:
        """The sizes in a few words, for tables and messages."""
        if self.sizes is not None:
            return ", ".join(self.sizes)
        summary = f"{self.min_side}-{self.max_side} px a side, ≤{self.max_pixels / 1e6:.1f} MP"
        if self.max_aspect is not None:
            summary += f", ≤{self.max_aspect:g}:1"
        if self.multiple_of > 1:
            summary += f", sides ×{self.multiple_of}"
        return summary

    def check(self, model: str, request: ImageRequest) -> None:
        """Raise :class:`UnsupportedRequest` naming the first field ``model`` cannot serve."""
        if request.n > self.max_n:
            noun = "image" if self.max_n == 1 else "images"
            raise UnsupportedRequest("n", f"{model} allows at most {self.max_n} {noun}")
        if request.output_format not in self.output_formats:
            raise UnsupportedRequest(
                "output_format",
                f"{model} outputs only {', '.join(self.output_formats)}, "
                f"not {request.output_format}",
            )
        self._check_size(model, request)

    def _check_size(self, model: str, request: ImageRequest) -> None:
        width, height = request.dimensions
        size = f"{width}x{height}"
        if self.sizes is not None:
            if size not in self.sizes:
                raise UnsupportedRequest(
                    "size", f"{model} serves only {', '.join(self.sizes)}, not {size}"
                )
            return
        for side, value in (("width", width), ("height", height)):
            if value < self.min_side:
                raise UnsupportedRequest(
                    "size", f"{side} {value} is below {model}'s minimum {self.min_side}"
                )
            if value > self.max_side:
                raise UnsupportedRequest(
                    "size", f"{side} {value} is above {model}'s maximum {self.max_side}"
                )
            if value % self.multiple_of:
                raise UnsupportedRequest(
                    "size", f"{side} {value} is not a multiple of {self.multiple_of} ({model})"
                )
        if width * height > self.max_pixels:
            raise UnsupportedRequest(
                "size",
                f"{size} is {width * height} pixels, above {model}'s maximum {self.max_pixels}",
            )
        aspect = max(width, height) / min(width, height)
        if self.max_aspect is not None and aspect > self.max_aspect:
            raise UnsupportedRequest(
                "size", f"{size} is wider than {model}'s {self.max_aspect:g}:1 aspect ratio limit"
            )
