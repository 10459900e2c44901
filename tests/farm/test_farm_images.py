"""Generated images: valid PNGs of exactly the requested size, as big as the scenario says,
deterministic, served statelessly from their URL; checked over real HTTP per wire format."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from imagerouter.errors import ConfigError
from mockproviders import Farm, Scenario
from mockproviders.bucket import go_duration
from mockproviders.images import image_digest, render_png
from mockproviders.pngcache import PngCache
from mockproviders.scenario import ImageSettings, load_scenario

from .pngcheck import read_png
from .wire import Wire

#: Realistic images are within this fraction of ``width * height * bytes_per_pixel``.
TOLERANCE = 0.01


def _assert_realistic(data: bytes, width: int, height: int, per_pixel: float = 1.5) -> None:
    info = read_png(data)
    assert (info.width, info.height) == (width, height)
    assert (info.colour_type, info.bit_depth) == (2, 8)
    assert abs(len(data) - width * height * per_pixel) <= width * height * per_pixel * TOLERANCE


@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (1536, 1024), (576, 1024), (33, 7)])
def test_realistic_png_has_the_requested_size_and_bytes(width: int, height: int) -> None:
    """Exactly width x height, RGB, about 1.5 bytes a pixel, and a decoder accepts it."""
    _assert_realistic(render_png(image_digest("p", 1, width, height), width, height), width, height)


@pytest.mark.parametrize("per_pixel", [0.25, 1.0, 2.0, 3.0])
def test_bytes_per_pixel_sets_the_file_size(per_pixel: float) -> None:
    """The file grows with bytes_per_pixel, up to the raw RGB size (3)."""
    data = render_png("ab" * 16, 640, 480, bytes_per_pixel=per_pixel)
    _assert_realistic(data, 640, 480, per_pixel)


def test_tiny_png_is_small_and_still_the_requested_size() -> None:
    """Tiny mode: a valid one-colour indexed PNG of the requested size, a few hundred bytes."""
    data = render_png("ab" * 16, 4096, 2048, mode="tiny")
    info = read_png(data)
    assert (info.width, info.height, info.colour_type) == (4096, 2048, 3)
    assert len(data) < 4096


@pytest.mark.parametrize("mode", ["realistic", "tiny"])
def test_same_inputs_same_bytes(mode: Any) -> None:
    """Prompt, seed and size decide the bytes; a different seed gives another image."""
    one = render_png(image_digest("a cat", 7, 512, 512), 512, 512, mode=mode)
    assert one == render_png(image_digest("a cat", 7, 512, 512), 512, 512, mode=mode)
    assert one != render_png(image_digest("a cat", 8, 512, 512), 512, 512, mode=mode)


def test_cache_serves_the_same_bytes_and_stays_within_its_bound() -> None:
    """The cache answers what render_png builds; it never holds more than cache_mb, and an
    image bigger than the bound is still answered (just not kept)."""
    cache = PngCache(ImageSettings(cache_mb=1))
    assert cache.png("ab" * 16, 300, 200) == render_png("ab" * 16, 300, 200)
    for side in range(200, 520, 40):
        read_png(cache.png("cd" * 16, side, side))
        assert 0 < cache.held_bytes <= 1024 * 1024
    held = cache.held_bytes
    _assert_realistic(cache.png("ef" * 16, 1024, 1024), 1024, 1024)
    assert cache.held_bytes == held


async def test_async_build_gives_the_same_bytes_cached_or_not() -> None:
    """The image host's threaded build answers what the synchronous one does, and caches it
    (an image over the bound too, just without keeping it)."""
    cache = PngCache(ImageSettings(cache_mb=1))
    first = await cache.png_async("ab" * 16, 320, 240)
    assert first == render_png("ab" * 16, 320, 240)
    assert cache.held_bytes > 0
    assert await cache.png_async("ab" * 16, 320, 240) == first
    big = await cache.png_async("ab" * 16, 1024, 1024)
    assert big == render_png("ab" * 16, 1024, 1024)


@pytest.mark.parametrize(
    ("images", "field"),
    [
        ('png_bytes = "huge"', "images.png_bytes"),
        ("bytes_per_pixel = 4", "images.bytes_per_pixel"),
        ("bytes_per_pixel = 0.01", "images.bytes_per_pixel"),
        ("pixels = 3", "images.pixels"),
    ],
)
def test_bad_images_table_names_the_field(tmp_path: Any, images: str, field: str) -> None:
    """A wrong ``[images]`` setting fails to load, naming the field."""
    path = tmp_path / "bad.toml"
    path.write_text(f"[images]\n{images}\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.field == field


def test_images_table_loads(tmp_path: Any) -> None:
    """``[images]`` in a scenario file reaches the scenario."""
    path = tmp_path / "tiny.toml"
    path.write_text('[images]\npng_bytes = "tiny"\n')
    assert load_scenario(path).images.png_bytes == "tiny"
    assert load_scenario("default").images == ImageSettings()


# -- over HTTP, per wire format ----------------------------------------------------------------


async def _download(session: aiohttp.ClientSession, url: str) -> bytes:
    response = await session.get(url)
    assert response.status == 200
    assert response.content_type == "image/png"
    return await response.read()


@pytest.mark.parametrize(
    ("size", "width", "height"), [("1536x1024", 1536, 1024), ("auto", 1024, 1024)]
)
async def test_openai_gpt_image_b64_is_the_requested_size(
    wire: Wire, size: str, width: int, height: int
) -> None:
    """GPT image models answer b64_json of a PNG of the requested size; ``size`` says it."""
    response = await wire.openai({"model": "gpt-image-1", "prompt": "a cat", "size": size})
    body = await response.json()
    assert response.status == 200
    assert body["size"] == f"{width}x{height}"
    _assert_realistic(base64.b64decode(body["data"][0]["b64_json"]), width, height)


async def test_openai_dalle_url_serves_the_requested_size(wire: Wire) -> None:
    """DALL·E answers a URL; the farm's image host serves a PNG of the requested size."""
    body = {"model": "dall-e-3", "prompt": "a cat", "size": "1792x1024"}
    data = (await (await wire.openai(body)).json())["data"]
    _assert_realistic(await _download(wire.session, data[0]["url"]), 1792, 1024)


@pytest.mark.parametrize(
    ("image_size", "width", "height"),
    [
        ("landscape_4_3", 1024, 768),
        ("portrait_16_9", 576, 1024),
        ("square", 512, 512),
        ({"width": 640, "height": 360}, 640, 360),
        ("1024x1536", 1024, 1536),
    ],
)
async def test_fal_images_carry_and_have_the_requested_size(
    wire: Wire, image_size: Any, width: int, height: int
) -> None:
    """fal: presets and {width, height}; ``images[]`` says width, height and file_size, and
    the URL serves exactly that."""
    url = f"{wire.farm.url}/fal/run/fal-ai/flux/dev"
    response = await wire.session.post(
        url,
        json={"prompt": "a cat", "image_size": image_size, "num_images": 2},
        headers={"Authorization": "Key k"},
    )
    images = (await response.json())["images"]
    assert len(images) == 2
    for image in images:
        assert (image["width"], image["height"]) == (width, height)
        data = await _download(wire.session, image["url"])
        assert image["file_size"] == len(data)
        _assert_realistic(data, width, height)


@pytest.mark.parametrize(
    ("inputs", "width", "height"),
    [
        ({"size": "1024*768"}, 1024, 768),
        ({"aspect_ratio": "16:9", "resolution": "1k"}, 1024, 576),
        ({"aspect_ratio": "2:3", "resolution": "2k"}, 1360, 2048),
    ],
)
async def test_wavespeed_outputs_have_the_requested_size(
    wire: Wire, inputs: dict[str, Any], width: int, height: int
) -> None:
    """WaveSpeed: ``size`` as ``W*H``, or aspect_ratio + resolution; outputs are URLs."""
    response = await wire.wavespeed_submit({"prompt": "a cat", "enable_sync_mode": True, **inputs})
    data = (await response.json())["data"]
    assert data["status"] == "completed"
    _assert_realistic(await _download(wire.session, data["outputs"][0]), width, height)


@pytest.mark.parametrize(
    ("inputs", "width", "height"),
    [
        ({}, 1024, 1024),
        ({"aspect_ratio": "16:9", "resolution": "2K"}, 2048, 1152),
        ({"aspect_ratio": "1:1", "megapixels": "0.25"}, 512, 512),
    ],
)
async def test_replicate_output_has_the_requested_size(
    wire: Wire, inputs: dict[str, Any], width: int, height: int
) -> None:
    """Replicate: aspect_ratio with resolution or megapixels; output URLs serve that size."""
    url = wire.farm.base_url("replicate") + "/models/black-forest-labs/flux-schnell/predictions"
    response = await wire.session.post(
        url,
        json={"input": {"prompt": "a cat", **inputs}},
        headers={"Authorization": "Bearer r8_k", "Prefer": "wait"},
    )
    prediction = await response.json()
    assert prediction["status"] == "succeeded"
    _assert_realistic(await _download(wire.session, prediction["output"][0]), width, height)


async def test_tiny_scenario_answers_tiny_pngs_of_the_requested_size(
    session: aiohttp.ClientSession,
) -> None:
    """``png_bytes = "tiny"``: same sizes, a few hundred bytes, inline and on the image host."""
    scenario = Scenario(images=ImageSettings(png_bytes="tiny"))
    async with Farm(scenario) as farm:
        wire = Wire(session, farm)
        body = {"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1536"}
        png = base64.b64decode((await (await wire.openai(body)).json())["data"][0]["b64_json"])
        assert (read_png(png).width, read_png(png).height) == (1024, 1536)
        assert len(png) < 1024
        result = await wire.wavespeed_submit(
            {"prompt": "a cat", "size": "2048*2048", "enable_sync_mode": True}
        )
        url = (await result.json())["data"]["outputs"][0]
        hosted = await _download(session, url)
        assert (read_png(hosted).width, read_png(hosted).height) == (2048, 2048)
        assert len(hosted) < 1024


async def test_bytes_per_pixel_reaches_the_wire(session: aiohttp.ClientSession) -> None:
    """A scenario's bytes_per_pixel sizes what the farm answers."""
    async with Farm(Scenario(images=ImageSettings(bytes_per_pixel=0.5))) as farm:
        body = {"model": "gpt-image-1", "prompt": "a cat", "size": "1024x1024"}
        response = await Wire(session, farm).openai(body)
        png = base64.b64decode((await response.json())["data"][0]["b64_json"])
        _assert_realistic(png, 1024, 1024, 0.5)


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
