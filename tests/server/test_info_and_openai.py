"""Models, providers, account, health, the OpenAPI document, and the openai SDK end to end."""

from __future__ import annotations

import base64

import openai
import pytest
from openai import AsyncOpenAI

from imagerouter.server.routes import ROUTES
from mockproviders import Farm
from tests.helpers.api import Api, ApiFactory


async def test_models_lists_catalog_with_prices(api: Api) -> None:
    """GET /v1/models lists each model, its providers in order, aliases and prices."""
    token = await api.key()
    body = await (await api.client.get("/v1/models", headers=api.auth(token))).json()
    models = {m["id"]: m for m in body["data"]}
    assert models["gpt-image-2"]["providers"] == ["fal", "wavespeed", "openai"]
    assert models["gpt-image-2"]["credits"]["standard"] == 26
    assert "dall-e-3" in models["gpt-image-2"]["aliases"]


async def test_providers_shows_breaker_and_health(api: Api) -> None:
    """GET /v1/providers shows each provider's breaker, health and cooldown."""
    token = await api.key()
    body = await (await api.client.get("/v1/providers", headers=api.auth(token))).json()
    names = {p["name"] for p in body["data"]}
    assert names == {"fal", "wavespeed", "openai", "replicate"}
    for provider in body["data"]:
        assert "state" in provider["breaker"]
        assert "score" in provider["health"]
        assert "cooldown_remaining_s" in provider


async def test_account_shows_balance_and_ledger(api: Api) -> None:
    """GET /v1/account shows the balance and the ledger, newest first, paged by ?cursor= as
    /v1/jobs is (?before=, its older name, still read; not both)."""
    token = await api.key("acme", credits=50)
    await api.key("acme", credits=25)
    body = await (
        await api.client.get("/v1/account", params={"limit": "1"}, headers=api.auth(token))
    ).json()
    assert body["name"] == "acme"
    assert body["balance"] == 75
    assert [(e["kind"], e["amount"]) for e in body["ledger"]] == [("grant", 25)]
    for name in ("cursor", "before"):
        older = await (
            await api.client.get(
                "/v1/account", params={name: body["next_cursor"]}, headers=api.auth(token)
            )
        ).json()
        assert [(e["kind"], e["amount"]) for e in older["ledger"]] == [("grant", 50)]
        assert older["next_cursor"] is None
    both = await api.client.get(
        "/v1/account",
        params={"cursor": body["next_cursor"], "before": body["next_cursor"]},
        headers=api.auth(token),
    )
    assert both.status == 422
    error = (await both.json())["error"]
    assert (error["code"], error["field"]) == ("validation_error", "before")
    assert "cursor" in error["message"]
    # a cursor past SQLite's integers is the client's mistake, named, not a 500
    for name in ("cursor", "before"):
        for huge in ("9223372036854775808", "99999999999999999999999"):
            answer = await api.client.get(
                "/v1/account", params={name: huge}, headers=api.auth(token)
            )
            assert answer.status == 422
            error = (await answer.json())["error"]
            assert (error["code"], error["field"]) == ("validation_error", name)


async def test_health_and_readiness(make_api: ApiFactory) -> None:
    """/healthz and /readyz answer without a key; readiness checks the store and workers."""
    api = await make_api()
    assert (await (await api.client.get("/healthz")).json()) == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"store": "ok", "workers": "ok"}
    for path in ("/healthz", "/readyz"):  # as a load balancer's health check may send it
        head = await api.client.head(path)
        assert (head.status, await head.read()) == (200, b"")


async def test_unknown_route_and_method_use_the_error_body(api: Api) -> None:
    """An unknown path is a 404 and a wrong method a 405, both in the error shape."""
    missing = await api.client.get("/v2/nothing")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong = await api.client.put("/v1/jobs")
    assert wrong.status == 405
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"


async def test_openapi_document_covers_every_route(api: Api) -> None:
    """/openapi.json is OpenAPI 3.1 and documents every route with its answers."""
    document = await (await api.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for spec in ROUTES:
        operation = document["paths"][spec.doc_path][spec.method.lower()]
        assert str(spec.ok[0]) in operation["responses"]
        for status in spec.errors:
            assert str(status) in operation["responses"]
    submit = document["paths"]["/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ImageRequest"
    }
    assert (
        "gpt-image-2"
        in document["components"]["schemas"]["ImageRequest"]["properties"]["model"]["examples"]
    )
    # the videos routes as they answer: an empty wallet is OpenAI's 429 insufficient_quota,
    # not a 402; the list's and the content's query parameters are declared
    videos = document["paths"]["/v1/videos"]
    assert "402" not in videos["post"]["responses"]
    assert "out of credits" in videos["post"]["responses"]["429"]["description"]
    assert {p["name"] for p in videos["get"]["parameters"]} >= {"after", "limit", "order"}
    content = document["paths"]["/v1/videos/{id}/content"]["get"]
    assert "variant" in {p["name"] for p in content["parameters"]}


async def test_openai_sdk_generates_through_our_endpoint(api: Api) -> None:
    """The official openai SDK, with only base_url changed, gets an image from imagerouter."""
    token = await api.key(credits=100)
    client = AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key=token, max_retries=0)
    async with client:
        answer = await client.images.generate(
            model="gpt-image-2", prompt="a lighthouse", size="1024x1024"
        )
    assert answer.created > 0
    assert len(answer.data) == 1
    assert base64.b64decode(answer.data[0].b64_json).startswith(b"\x89PNG")
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert listing["data"][0]["status"] == "completed"


async def test_openai_sdk_sees_openai_shaped_errors(api: Api, farm: Farm) -> None:
    """Bad keys, bad fields, unknown models, an empty wallet and failed jobs raise the SDK's
    own exception classes, with OpenAI's error fields."""
    token = await api.key("sdk", credits=30)
    base_url = str(api.client.make_url("/v1"))
    async with AsyncOpenAI(base_url=base_url, api_key="ir_bad", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth_error:
            await bad.images.generate(model="gpt-image-2", prompt="x")
    assert auth_error.value.code == "invalid_api_key"
    async with AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as bad_field:
            await client.images.generate(model="gpt-image-2", prompt="x", n=50)
        assert bad_field.value.param == "n"
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.images.generate(model="dall-e-9", prompt="x")
        assert unknown.value.code == "model_not_found"
        for name in ("fal", "wavespeed", "openai"):
            farm.set_faults(name, {"down": True})
        with pytest.raises(openai.InternalServerError) as failed:
            await client.images.generate(model="gpt-image-2", prompt="x")
        assert failed.value.code == "no_provider_available"
        assert failed.value.response.headers["x-should-retry"] == "false"
        with pytest.raises(openai.RateLimitError) as broke:
            await client.images.generate(model="gpt-image-2", prompt="x", quality="high")
        assert broke.value.code == "insufficient_quota"
