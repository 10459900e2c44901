"""The farm's own image host: ``GET /_farm/media/{w}x{h}/{digest}.png``.

Stateless: the picture is rebuilt from the digest and size (through the farm's
:class:`~mockproviders.pngcache.PngCache`), so any URL the farm ever handed out keeps working,
across restarts too (with the same ``[images]`` settings, byte for byte).
"""

from __future__ import annotations

import re

from aiohttp import web

from mockproviders.images import image_digest, parse_wxh
from mockproviders.pngcache import PngCache

__all__ = ["MEDIA_ROUTE", "media_for", "media_handler", "media_path"]

MEDIA_ROUTE = "/_farm/media/{size}/{name}"
_NAME = re.compile(r"^([0-9a-f]{8,64})\.png$")


def media_path(digest: str, width: int, height: int) -> str:
    """The path (no origin) of one generated image."""
    return f"/_farm/media/{width}x{height}/{digest}.png"


def media_for(prompt: str, seed: int | None, width: int, height: int, index: int) -> str:
    """The path of image ``index`` generated for ``prompt`` at ``seed`` and that size."""
    return media_path(image_digest(prompt, seed, width, height, index), width, height)


def media_handler(pngs: PngCache) -> web.Handler:
    """The handler of :data:`MEDIA_ROUTE`, answering the images of ``pngs``."""

    async def serve_media(request: web.Request) -> web.Response:
        """The PNG the URL names; 404 for a URL the farm could not have made."""
        size = parse_wxh(request.match_info["size"])
        name = _NAME.match(request.match_info["name"])
        if size is None or name is None:
            raise web.HTTPNotFound(text="no such image")
        return web.Response(
            body=await pngs.png_async(name.group(1), *size),
            content_type="image/png",
            headers={"cache-control": "public, max-age=31536000, immutable"},
        )

    return serve_media
