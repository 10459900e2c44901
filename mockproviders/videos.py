"""What every adapter shares to serve video models: which provider model ids are video ones,
reading the video inputs, and the farm's video host ``GET /_farm/media/video/…``.

A video's URL names its digest, size, seconds and byte size, so the host is stateless like the
image host: :class:`~mockproviders.mp4.FarmVideo` rebuilds the same file from the URL, its
header cached, its padding streamed chunk by chunk (a 50 MB video costs the farm a few KB).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from mockproviders.images import parse_wxh
from mockproviders.mp4 import FarmVideo
from mockproviders.scenario import VideoSettings

__all__ = [
    "VIDEO_MEDIA_ROUTE",
    "is_video_model",
    "read_video_input",
    "video_handler",
    "video_path",
]

VIDEO_MEDIA_ROUTE = "/_farm/media/video/{size}/{seconds}/{name}"
#: Words in a provider model id that make it a video model (Veo, Seedance, *-to-video…).
_VIDEO_WORDS = ("veo", "seedance", "video", "t2v", "i2v")
_NAME = re.compile(r"^([0-9a-f]{8,64})(?:-(\d{1,10}))?\.mp4$")
_DURATION = re.compile(r"^([1-9][0-9]?)s?$")
_RATIO = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")
_RESOLUTION = re.compile(r"^(\d{3,4})p$")
#: Longest video the farm makes, in seconds.
MAX_SECONDS = 60


def is_video_model(model_id: str) -> bool:
    """True if the provider model id names a video model."""
    lowered = model_id.lower()
    return any(word in lowered for word in _VIDEO_WORDS)


def video_path(digest: str, width: int, height: int, seconds: int, size: int) -> str:
    """The path (no origin) of one generated video of ``size`` bytes (0: unpadded)."""
    suffix = f"-{size}" if size else ""
    return f"/_farm/media/video/{width}x{height}/{seconds}/{digest}{suffix}.mp4"


def _dimensions(ratio: str, resolution: str) -> tuple[int, int]:
    match_ratio, match_res = _RATIO.match(ratio), _RESOLUTION.match(resolution)
    assert match_ratio is not None
    assert match_res is not None
    wide, tall, short = int(match_ratio[1]), int(match_ratio[2]), int(match_res[1])
    if wide >= tall:
        return 2 * round(short * wide / tall / 2), short
    return short, 2 * round(short * tall / wide / 2)


def read_video_input(
    body: dict[str, Any], *, default_seconds: int, model_id: str = ""
) -> dict[str, Any] | tuple[str, str]:
    """The video inputs of a request body, or ``(field, reason)`` for the first bad one.

    ``duration`` may be a number or a string like ``"8s"`` / ``"5"``; ``resolution`` is like
    ``"720p"`` (a model id ending in ``-480p`` etc. sets it, for APIs with one id per
    resolution).
    """
    raw = body.get("duration", default_seconds)
    match = _DURATION.match(str(raw)) if not isinstance(raw, bool) else None
    if match is None or int(match[1]) > MAX_SECONDS:
        return "duration", f"duration must be 1 to {MAX_SECONDS} seconds, got {raw!r}"
    ratio = str(body.get("aspect_ratio") or "16:9")
    if not _RATIO.match(ratio):
        return "aspect_ratio", f"aspect_ratio must look like 16:9, got {ratio!r}"
    from_id = re.search(r"(\d{3,4}p)$", model_id)
    resolution = str(body.get("resolution") or (from_id[1] if from_id else "720p"))
    if not _RESOLUTION.match(resolution) or not 240 <= int(resolution[:-1]) <= 2160:
        return "resolution", f"resolution must be 240p to 2160p, got {resolution!r}"
    audio = body.get("generate_audio", False)
    if not isinstance(audio, bool):
        return "generate_audio", "generate_audio must be a boolean"
    image = body.get("image_url", body.get("image"))
    if image is not None and not isinstance(image, str):
        return "image_url", "image_url must be a string"
    width, height = _dimensions(ratio, resolution)
    return {
        "seconds": int(match[1]),
        "aspect_ratio": ratio,
        "resolution": resolution,
        "width": width,
        "height": height,
        "generate_audio": audio,
        "image_url": image,
    }


def video_handler(settings: Callable[[], VideoSettings]) -> web.Handler:
    """The handler of :data:`VIDEO_MEDIA_ROUTE`: the MP4 the URL names, streamed (at most
    ``serve_bytes_per_s`` of the live ``settings()``)."""

    async def serve_video(request: web.Request) -> web.StreamResponse:
        """The video; 404 for a URL the farm could not have made."""
        size = parse_wxh(request.match_info["size"])
        seconds = request.match_info["seconds"]
        name = _NAME.match(request.match_info["name"])
        if size is None or name is None or not seconds.isdigit():
            raise web.HTTPNotFound(text="no such video")
        if not 1 <= int(seconds) <= MAX_SECONDS:
            raise web.HTTPNotFound(text="no such video")
        video = FarmVideo(name[1], size[0], size[1], int(seconds), int(name[2] or 0))
        response = web.StreamResponse(
            headers={
                "content-type": "video/mp4",
                "cache-control": "public, max-age=31536000, immutable",
            }
        )
        response.content_length = video.size
        await response.prepare(request)
        rate = settings().serve_bytes_per_s
        for chunk in video.chunks():
            await response.write(chunk)
            if rate:
                await asyncio.sleep(len(chunk) / rate)
        await response.write_eof()
        return response

    return serve_video
