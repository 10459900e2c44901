"""Video models in the catalog: what they make, what a request may ask, and its price per
second of output by resolution (sound adds its own per-second price)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from imagerouter.catalog import Catalog, CatalogModel, load_catalog
from imagerouter.errors import UnsupportedRequest
from imagerouter.generation import ImageRequest

CATALOG = load_catalog()


def _request(model: str, **fields: Any) -> ImageRequest:
    return ImageRequest(model=model, prompt="a heron takes off from a misty lake", **fields)


@pytest.mark.parametrize("name", ["veo3-fast", "veo3", "seedance-lite", "seedance-pro"])
def test_each_video_model_is_served_by_fal_and_wavespeed(name: str) -> None:
    """The four video models are video models, each on fal and WaveSpeed."""
    model = CATALOG.resolve(name)
    assert model.kind == "video"
    assert {"fal", "wavespeed"} <= {entry.provider for entry in model.providers}


def test_the_defaults_are_the_first_of_each_list_and_priced_per_second() -> None:
    """Veo 3 Fast unset: 8 s, 720p, 16:9, with sound; 8 x (24 + 12) credits."""
    model = CATALOG.resolve("veo3-fast")
    resolved = model.resolve_request(_request("veo3-fast"))
    assert (resolved.duration, resolved.resolution, resolved.aspect_ratio) == (8, "720p", "16:9")
    assert resolved.generate_audio is True
    assert resolved.size == "1280x720"
    assert model.price(_request("veo3-fast")) == 8 * 36
    assert model.price(_request("veo3-fast", generate_audio=False)) == 8 * 24


def test_price_scales_with_seconds_and_resolution_tier() -> None:
    """Seedance Lite: 4 credits a second at 480p, 8 at 720p, 18 at 1080p; 10 s is twice 5 s."""
    model = CATALOG.resolve("seedance-lite")
    prices = {
        (seconds, resolution): model.price(
            _request("seedance-lite", duration=seconds, resolution=resolution)
        )
        for seconds in (5, 10)
        for resolution in ("480p", "720p", "1080p")
    }
    assert prices[(5, "480p")] == 20
    assert prices[(5, "720p")] == 40
    assert prices[(10, "1080p")] == 180
    assert prices[(10, "720p")] == 2 * prices[(5, "720p")]


def test_a_size_picks_the_aspect_ratio_and_resolution() -> None:
    """size 720x1280 (as OpenAI's Videos API says it) is 9:16 at 720p."""
    resolved = CATALOG.resolve("seedance-lite").resolve_request(
        _request("seedance-lite", size="720x1280")
    )
    assert (resolved.aspect_ratio, resolved.resolution) == ("9:16", "720p")


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    [
        ("veo3-fast", {"duration": 5}, "duration", "veo3-fast makes videos of 8 seconds, not 5"),
        ("seedance-lite", {"resolution": "2160p"}, "resolution", "not 2160p"),
        ("seedance-lite", {"aspect_ratio": "21:9"}, "aspect_ratio", "not 21:9"),
        ("seedance-lite", {"generate_audio": True}, "generate_audio", "silent videos only"),
        ("veo3", {"image_url": "https://example.com/a.png"}, "image_url", "no first frame"),
        ("veo3-fast", {"n": 2}, "n", "one video per request"),
        ("veo3-fast", {"size": "1024x1024"}, "size", "not 1024x1024"),
        ("veo3-fast", {"size": "1280x720", "aspect_ratio": "9:16"}, "aspect_ratio", "contradicts"),
        ("flux-dev", {"duration": 5}, "duration", "flux-dev makes images"),
        ("flux-dev", {"resolution": "720p"}, "resolution", "flux-dev makes images"),
    ],
)
def test_a_request_the_model_cannot_serve_names_the_field(
    model: str, fields: dict[str, Any], field: str, message: str
) -> None:
    """Each video field outside the model's lists (or on an image model) is refused by name."""
    with pytest.raises(UnsupportedRequest) as caught:
        CATALOG.resolve(model).price(_request(model, **fields))
    assert caught.value.field == field
    assert message.replace("no first frame", "does not take a first frame") in str(caught.value)


def test_a_first_frame_picks_the_image_to_video_endpoint_and_resolution_fills_the_id() -> None:
    """WaveSpeed's id holds the resolution; with image_url each provider's image id is used."""
    model = CATALOG.resolve("seedance-lite")
    text = model.resolve_request(_request("seedance-lite", resolution="480p"))
    image = model.resolve_request(
        _request("seedance-lite", resolution="480p", image_url="https://example.com/first.png")
    )
    wavespeed, fal = model.providers
    assert wavespeed.model_for(text) == "bytedance/seedance-v1-lite-t2v-480p"
    assert wavespeed.model_for(image) == "bytedance/seedance-v1-lite-i2v-480p"
    assert fal.model_for(image) == "fal-ai/bytedance/seedance/v1/lite/image-to-video"


def test_an_image_url_must_be_http_or_a_data_image() -> None:
    """A file:// first frame is refused by the request itself."""
    with pytest.raises(ValidationError, match="image_url"):
        _request("seedance-lite", image_url="file:///etc/passwd")


def _model(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "video",
        "providers": [{"provider": "fal", "model": "fal-ai/x"}],
        "video": {"durations": [5], "resolutions": ["720p", "1080p"], "aspect_ratios": ["16:9"]},
        "video_credits": {"per_second": {"720p": 5, "1080p": 9}},
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"video_credits": {"per_second": {"720p": 5}}}, "lacks 1080p"),
        ({"video": None}, "needs video and video_credits"),
        ({"kind": "image"}, "needs credits"),
        (
            {
                "video": {
                    "durations": [5],
                    "resolutions": ["720p"],
                    "aspect_ratios": ["16:9"],
                    "first_frame": True,
                }
            },
            "has no image_model",
        ),
    ],
)
def test_a_video_model_that_cannot_price_every_request_is_a_config_error(
    fields: dict[str, Any], reason: str
) -> None:
    """A resolution without a price, a missing table, a first frame without an endpoint."""
    with pytest.raises(ValidationError, match=reason):
        Catalog.model_validate({"models": {"v": _model(**fields)}})


def test_a_valid_custom_video_model_loads() -> None:
    """The same table, complete, is a video model."""
    catalog = Catalog.model_validate({"models": {"v": _model()}})
    assert isinstance(catalog.models["v"], CatalogModel)
    assert catalog.models["v"].price(_request("v", resolution="1080p")) == 45
