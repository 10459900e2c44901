"""A request a model cannot serve is a 422 naming the field, on every submit route and every
store, before anything is stored or charged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import Api

TOO_MANY = {"model": "flux-kontext-pro", "prompt": "a lighthouse at dusk", "n": 2}


@pytest.mark.parametrize("path", ["/v1/jobs", "/api/generate/image"])
async def test_too_many_images_is_422_naming_n(any_api: Api, path: str) -> None:
    """n above the model's max_n: 422, field n, the model's limit in the message."""
    token = await any_api.key(credits=1000)
    status, body = await any_api.post(token, path, TOO_MANY)
    assert status == 422, body
    assert body["error"]["field"] == "n"
    assert body["error"]["code"] == "unsupported_by_model"
    assert body["error"]["message"] == "n: flux-kontext-pro allows at most 1 image"
    await any_api.assert_nothing_stored(token, 1000)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "recraft-v3", "size": "1000x1000"}, "size"),
        ({"model": "ideogram-v3", "output_format": "webp"}, "output_format"),
    ],
)
async def test_a_size_or_format_the_model_lacks_is_422(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    """A size outside the model's list and a format it does not output name their field."""
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", {"prompt": "a pier", **fields})
    assert status == 422, body
    assert body["error"]["field"] == field
    assert body["error"]["message"].startswith(f"{field}: {fields['model']} ")
    await api.assert_nothing_stored(token, 1000)


async def test_openai_route_answers_in_openai_shape_with_the_param(api: Api) -> None:
    """The OpenAI-compatible route says the same in OpenAI's error shape, param n."""
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/images/generations", TOO_MANY)
    assert status == 422, body
    assert body["error"]["param"] == "n"
    assert "flux-kontext-pro allows at most 1 image" in body["error"]["message"]
    await api.assert_nothing_stored(token, 1000)


async def test_within_the_models_capabilities_it_is_accepted_and_served(api: Api) -> None:
    """The same model at n=1 on one of its sizes is accepted and completes on the farm."""
    token = await api.key(credits=1000)
    request = {**TOO_MANY, "n": 1, "size": "1568x672"}
    status, body = await api.post(token, "/v1/jobs", request)
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "completed", job
    assert len(job["result"]["images"]) == 1


async def test_models_listing_shows_each_models_capabilities(api: Api) -> None:
    """GET /v1/models says what each model makes, as the catalog does."""
    token = await api.key(credits=10)
    answer = await api.client.get("/v1/models", headers=api.auth(token))
    models = {model["id"]: model for model in (await answer.json())["data"]}
    assert len(models) >= 20
    kontext = models["flux-kontext-pro"]
    assert kontext["capabilities"]["max_n"] == 1
    assert kontext["providers"] == ["fal", "wavespeed", "replicate"]
    assert "1024x1024" in models["recraft-v3"]["capabilities"]["sizes"]
    assert models["ideogram-v3"]["capabilities"]["output_formats"] == ["png"]
