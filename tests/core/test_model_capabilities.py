"""Per-model capabilities: the catalog says what each model makes, and a request outside that is
refused naming the field, before it has a price."""

from __future__ import annotations

import pytest

from imagerouter import ImageRequest, UnsupportedRequest, load_catalog
from imagerouter.catalog import Catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    [
        ("flux-kontext-pro", {"n": 2}, "n", "flux-kontext-pro allows at most 1 image"),
        ("flux-schnell", {"n": 5}, "n", "flux-schnell allows at most 4 images"),
        ("ideogram-v3", {"output_format": "jpeg"}, "output_format", "ideogram-v3 outputs only"),
        ("recraft-v3", {"size": "1000x1000"}, "size", "recraft-v3 serves only 1024x1024, "),
        ("imagen-4-fast", {"size": "2048x2048"}, "size", "imagen-4-fast serves only"),
        ("flux-schnell", {"size": "2560x1024"}, "size", "width 2560 is above flux-schnell's"),
        ("seedream-4", {"size": "1024x768"}, "size", "height 768 is below seedream-4's minimum"),
        ("nano-banana", {"size": "1536x1536"}, "size", "1536x1536 is 2359296 pixels, above"),
        ("gpt-image-2", {"size": "1000x1000"}, "size", "width 1000 is not a multiple of 16"),
        ("gpt-image-2", {"size": "3200x1024"}, "size", "3200x1024 is wider than gpt-image-2's 3:1"),
    ],
)
def test_a_request_the_model_cannot_serve_names_the_field(
    catalog: Catalog, model: str, fields: dict, field: str, message: str
) -> None:
    """The model's limit is the error's field and message; pricing refuses it too."""
    request = ImageRequest(model=model, prompt="p", **fields)
    entry = catalog.resolve(model)
    with pytest.raises(UnsupportedRequest) as caught:
        entry.check(request)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: {message}"), str(caught.value)
    with pytest.raises(UnsupportedRequest):
        entry.price(request)


def test_an_alias_is_checked_as_its_model(catalog: Catalog) -> None:
    """The message names the catalog model, not the alias the client sent."""
    request = ImageRequest(model="flux-kontext", prompt="p", n=3)
    with pytest.raises(UnsupportedRequest, match="n: flux-kontext-pro allows at most 1 image"):
        catalog.resolve("flux-kontext").price(request)


def test_every_model_serves_the_default_request(catalog: Catalog) -> None:
    """1024x1024, one png: what a request without size, n or format asks for, every model makes
    (the simulator and the load tests price exactly that)."""
    for name, model in catalog.models.items():
        assert model.price(ImageRequest(model=name, prompt="p")) >= 1, name


def test_the_catalog_is_worth_routing(catalog: Catalog) -> None:
    """At least 20 models; each priced on every provider, never below what its first provider
    charges (1 credit is about $0.005); Replicate only ever optional, and no model served by
    optional providers alone (that model would fail without a Replicate key)."""
    assert len(catalog.models) >= 20
    for name, model in catalog.models.items():
        assert all(entry.cost_usd is not None for entry in model.providers), name
        first = model.providers[0].cost_usd or 0.0
        if model.video is not None and model.video_credits is not None:
            # per second, at the default resolution (the one the provider's cost_usd is for)
            per_second = model.video_credits.per_second[model.video.resolutions[0]]
            assert per_second * 0.005 >= first * 0.99, name
            audio = model.providers[0].audio_cost_usd
            if audio is not None:
                with_audio = per_second + model.video_credits.audio_per_second
                assert with_audio * 0.005 >= audio * 0.99, name
        else:
            assert model.credits is not None
            assert model.credits.low * 0.005 >= first * 0.99, name
        assert all(e.optional for e in model.providers if e.provider == "replicate"), name
        assert any(not e.optional for e in model.providers), name


def test_a_model_without_capabilities_takes_the_global_bounds() -> None:
    """An override catalog written before capabilities existed keeps working unchanged."""
    catalog = Catalog.model_validate(
        {
            "models": {
                "mine": {
                    "credits": {"low": 1, "standard": 1, "high": 1},
                    "providers": [{"provider": "fal", "model": "fal-ai/x"}],
                }
            }
        }
    )
    request = ImageRequest(model="mine", prompt="p", n=10, size="3840x2160", output_format="webp")
    assert catalog.resolve("mine").price(request) > 0
