"""Generated images: real small PNGs, deterministic, served statelessly from their URL."""

from __future__ import annotations

import struct
import zlib

import aiohttp
import pytest

from mockproviders import Farm
from mockproviders.bucket import go_duration
from mockproviders.images import image_digest, render_png


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert (
        zlib.crc32(data[12 : 16 + length])
        == struct.unpack(">I", data[16 + length : 20 + length])[0]
    )
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(
    ("requested", "actual"),
    [
        ((1024, 1024), (64, 64)),
        ((1536, 1024), (64, 43)),
        ((576, 1024), (36, 64)),
        ((20, 10), (20, 10)),
    ],
)
def test_png_keeps_aspect_ratio_with_longest_side_64(
    requested: tuple[int, int], actual: tuple[int, int]
) -> None:
    """The picture keeps the requested aspect ratio; its longest side is at most 64 px."""
    assert _png_size(render_png(image_digest("p", 1, *requested), *requested)) == actual


def test_same_inputs_same_bytes() -> None:
    """Prompt, seed and size decide the picture; a different seed paints another one."""
    one = render_png(image_digest("a cat", 7, 512, 512), 512, 512)
    assert one == render_png(image_digest("a cat", 7, 512, 512), 512, 512)
    assert one != render_png(image_digest("a cat", 8, 512, 512), 512, 512)


async def test_media_url_works_on_any_farm(session: aiohttp.ClientSession) -> None:
    """A media URL from one farm is served by another: the image is repainted from its name."""
    async with Farm() as first:
        response = await session.post(
            f"{first.url}/fal/run/fal-ai/flux",
            json={"prompt": "a cat", "seed": 5},
            headers={"Authorization": "Key k"},
        )
        url = (await response.json())["images"][0]["url"]
        original = await (await session.get(url)).read()
    async with Farm() as second:
        path = url.split("/_farm/", 1)[1]
        again = await session.get(f"{second.url}/_farm/{path}")
        assert again.content_type == "image/png"
        assert await again.read() == original
        assert (await session.get(f"{second.url}/_farm/media/1x1/nothex.png")).status == 404


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1s"), (360, "6m0s"), (0.012, "12ms"), (1.5, "1.5s"), (3725, "1h2m5s"), (0, "0s")],
)
def test_go_durations(seconds: float, text: str) -> None:
    """x-ratelimit-reset-requests uses Go's duration format."""
    assert go_duration(seconds) == text
