"""What one catalog model can make: sizes, image count and output formats; for a video
model, durations, resolutions, aspect ratios, audio and a first frame.

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

__all__ = ["Capabilities", "VideoCapabilities", "video_dimensions"]

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


def resolution_side(resolution: str) -> int:
    """The shorter side of a ``<n>p`` resolution (``720p`` -> 720)."""
    return int(resolution.removesuffix("p"))


def aspect_of(aspect_ratio: str) -> tuple[int, int]:
    """``"16:9"`` -> (16, 9)."""
    width, height = aspect_ratio.split(":")
    return int(width), int(height)


def video_dimensions(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height) of a video of that aspect ratio whose shorter side is the resolution's,
    each side rounded to an even number (``16:9``, ``720p`` -> 1280x720)."""
    ratio_w, ratio_h = aspect_of(aspect_ratio)
    short = resolution_side(resolution)
    if ratio_w >= ratio_h:
        return 2 * round(short * ratio_w / ratio_h / 2), short
    return short, 2 * round(short * ratio_h / ratio_w / 2)


class VideoCapabilities(BaseModel):
    """What a video model makes: durations, resolutions, aspect ratios, audio, first frame.

    The first of each list is the default a request that leaves the field unset gets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    durations: tuple[int, ...] = Field(min_length=1, description="Seconds, the default first.")
    resolutions: tuple[str, ...] = Field(min_length=1, description="'720p'..., default first.")
    aspect_ratios: tuple[str, ...] = Field(min_length=1, description="'16:9'..., default first.")
    audio: bool = Field(default=False, description="Can add a sound track.")
    audio_default: bool = Field(default=False, description="Sound on when the request is silent.")
    first_frame: bool = Field(default=False, description="Accepts image_url (image to video).")

    @model_validator(mode="after")
    def _check(self) -> VideoCapabilities:
        for resolution in self.resolutions:
            if not resolution.endswith("p") or not resolution[:-1].isdigit():
                raise ValueError(f"resolution {resolution!r} is not like '720p'")
        for ratio in self.aspect_ratios:
            parts = ratio.split(":")
            if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
                raise ValueError(f"aspect ratio {ratio!r} is not like '16:9'")
        return self

    def summary(self) -> str:
        """The durations, resolutions and ratios in a few words, for tables and messages."""
        seconds = "/".join(str(d) for d in self.durations)
        audio = ", audio" if self.audio else ""
        return f"{seconds} s, {'/'.join(self.resolutions)}, {'/'.join(self.aspect_ratios)}{audio}"

    def resolve(self, model: str, request: ImageRequest) -> ImageRequest:
        """``request`` with every video field set (defaults filled in; a ``size`` the client
        gave turned into its aspect ratio and resolution); :class:`UnsupportedRequest` naming
        the first field ``model`` cannot serve."""
        if request.n != 1:
            raise UnsupportedRequest("n", f"{model} makes one video per request")
        aspect_ratio, resolution = request.aspect_ratio, request.resolution
        if "size" in request.model_fields_set:
            aspect_ratio, resolution = self._from_size(model, request)
        duration = request.duration if request.duration is not None else self.durations[0]
        if duration not in self.durations:
            allowed = ", ".join(str(d) for d in self.durations)
            raise UnsupportedRequest(
                "duration", f"{model} makes videos of {allowed} seconds, not {duration}"
            )
        resolution = resolution or self.resolutions[0]
        if resolution not in self.resolutions:
            raise UnsupportedRequest(
                "resolution",
                f"{model} makes {', '.join(self.resolutions)} videos, not {resolution}",
            )
        aspect_ratio = aspect_ratio or self.aspect_ratios[0]
        if aspect_ratio not in self.aspect_ratios:
            raise UnsupportedRequest(
                "aspect_ratio",
                f"{model} makes {', '.join(self.aspect_ratios)} videos, not {aspect_ratio}",
            )
        audio = request.generate_audio
        if audio and not self.audio:
            raise UnsupportedRequest("generate_audio", f"{model} makes silent videos only")
        if request.image_url is not None and not self.first_frame:
            raise UnsupportedRequest("image_url", f"{model} does not take a first frame")
        width, height = video_dimensions(aspect_ratio, resolution)
        update = {
            "duration": duration,
            "resolution": resolution,
            "aspect_ratio": aspect_ratio,
            "generate_audio": self.audio_default if audio is None else audio,
            "size": f"{width}x{height}",
        }
        if all(getattr(request, name) == value for name, value in update.items()):
            return request
        return request.model_copy(update=update)

    def _from_size(self, model: str, request: ImageRequest) -> tuple[str, str]:
        """The aspect ratio and resolution of the client's ``size`` (one the model makes)."""
        width, height = request.dimensions
        for ratio in self.aspect_ratios:
            for resolution in self.resolutions:
                if video_dimensions(ratio, resolution) == (width, height):
                    if request.aspect_ratio not in (None, ratio):
                        raise UnsupportedRequest(
                            "aspect_ratio",
                            f"{request.aspect_ratio} contradicts size {request.size}",
                        )
                    if request.resolution not in (None, resolution):
                        raise UnsupportedRequest(
                            "resolution", f"{request.resolution} contradicts size {request.size}"
                        )
                    return ratio, resolution
        sizes = ", ".join(
            "{}x{}".format(*video_dimensions(ratio, resolution))
            for resolution in self.resolutions
            for ratio in self.aspect_ratios
        )
        raise UnsupportedRequest("size", f"{model} makes videos of {sizes}, not {request.size}")
