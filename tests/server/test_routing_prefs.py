"""Per-request routing preferences on every job-creating route, against the farm over real
loopback HTTP, on SQLite and PostgreSQL: they choose who serves, fail fast without fallbacks
(refunded), sort by price, and are refused with a 422 before anything is charged."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from openai import AsyncOpenAI

from imagerouter.auth import mint_key
from imagerouter.server.keys import store_key
from mockproviders import Farm
from tests.helpers.api import Api

ROUTES = ("/v1/jobs", "/api/generate/image", "/v1/images/generations")
GPT = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}
FLUX = {"model": "flux-dev", "prompt": "a fox in the snow"}


async def balance(api: Api, token: str) -> int:
    """The account's credit balance."""
    answer = await api.client.get("/v1/account", headers=api.auth(token))
    return (await answer.json())["balance"]


async def run(api: Api, token: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit ``body`` on ``route`` and return the finished job's JSON view."""
    answer = await api.client.post(route, json=body, headers=api.auth(token))
    payload = await answer.json()
    if route == "/v1/images/generations":
        job_id = answer.headers["x-imagerouter-job-id"]
    else:
        assert answer.status == 202, payload
        job_id = payload["id"] if route == "/v1/jobs" else payload["data"]["jobId"]
    return await api.wait_final(token, job_id)


def skips(job: dict[str, Any]) -> dict[str, str]:
    """Each skipped provider's reason code (the part before the colon)."""
    return {
        a["provider"]: a["reason"].split(":")[0]
        for a in job["attempts"]
        if a["outcome"] == "skipped"
    }


@pytest.mark.parametrize("route", ROUTES)
async def test_only_ignore_and_order_choose_who_serves(any_api: Api, route: str) -> None:
    """gpt-image-2 goes to fal first by the catalog; each preference sends it elsewhere and
    the providers it left out are on the job's attempts with their reason."""
    token = await any_api.key(credits=1000)
    only = await run(any_api, token, route, {**GPT, "routing": {"only": ["wavespeed"]}})
    assert only["status"] == "completed"
    assert only["result"]["provider"] == "wavespeed"
    assert skips(only) == {"fal": "routing_only", "openai": "routing_only"}
    assert only["request"]["routing"]["only"] == ["wavespeed"]  # stored with the job

    ignore = await run(any_api, token, route, {**GPT, "routing": {"ignore": ["fal"]}})
    assert ignore["result"]["provider"] == "wavespeed"
    assert skips(ignore) == {"fal": "routing_ignore"}

    order = await run(any_api, token, route, {**GPT, "routing": {"order": ["openai", "fal"]}})
    assert order["result"]["provider"] == "openai"
    assert skips(order) == {}

    plain = await run(any_api, token, route, GPT)
    assert plain["result"]["provider"] == "fal"


@pytest.mark.parametrize("route", ROUTES)
async def test_no_fallbacks_fails_fast_and_refunds(any_api: Api, farm: Farm, route: str) -> None:
    """With fal down, a job that allows no fallback fails on fal and is refunded, while the
    same job with fallbacks is served by WaveSpeed; the refused job is not failed-while-
    servable, since the client ruled the other providers out."""
    farm.set_faults("fal", {"down": True})
    token = await any_api.key(credits=1000)
    job = await run(any_api, token, route, {**GPT, "routing": {"allow_fallbacks": False}})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_provider_available"
    assert job["error"]["failed_while_servable"] is False
    assert job["credits"] == {"price": 26, "charged": 26, "refunded": 26}
    assert {a["provider"] for a in job["attempts"] if a["outcome"] == "error"} == {"fal"}
    assert skips(job) == {"wavespeed": "no_fallbacks", "openai": "no_fallbacks"}
    assert await balance(any_api, token) == 1000

    served = await run(any_api, token, route, GPT)
    assert served["status"] == "completed"
    assert served["result"]["provider"] == "wavespeed"


@pytest.mark.parametrize("route", ROUTES)
async def test_sort_price_picks_the_cheapest_callable(any_api: Api, farm: Farm, route: str) -> None:
    """flux-dev lists fal ($0.025) before WaveSpeed ($0.02): ``sort: price`` sends it to
    WaveSpeed, and to the next cheapest when WaveSpeed is down."""
    token = await any_api.key(credits=1000)
    cheapest = await run(any_api, token, route, {**FLUX, "routing": {"sort": "price"}})
    assert cheapest["result"]["provider"] == "wavespeed"
    assert (await run(any_api, token, route, FLUX))["result"]["provider"] == "fal"

    farm.set_faults("wavespeed", {"down": True})
    next_one = await run(any_api, token, route, {**FLUX, "routing": {"sort": "price"}})
    assert next_one["status"] == "completed"
    assert next_one["result"]["provider"] == "fal"
    assert next_one["attempts"][0]["provider"] == "wavespeed"


@pytest.mark.parametrize("route", ROUTES)
async def test_max_cost_usd_leaves_out_dearer_providers(any_api: Api, route: str) -> None:
    """``max_cost_usd`` 0.02 leaves only WaveSpeed for flux-dev; the others are skipped."""
    token = await any_api.key(credits=1000)
    job = await run(any_api, token, route, {**FLUX, "routing": {"max_cost_usd": 0.02}})
    assert job["result"]["provider"] == "wavespeed"
    assert set(skips(job).values()) == {"max_cost"}
    assert "fal" in skips(job)


async def _refused(api: Api, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Submit a request that must be refused: (status, error object); nothing is charged
    and no job is created."""
    token = await api.key(account=f"refused-{uuid.uuid4().hex}", credits=1000)
    answer = await api.client.post(route, json=body, headers=api.auth(token))
    error = (await answer.json())["error"]
    assert "x-imagerouter-job-id" not in answer.headers
    assert await balance(api, token) == 1000
    jobs = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert jobs["data"] == []
    return answer.status, error


@pytest.mark.parametrize("route", ROUTES)
async def test_max_price_below_the_price_is_refused_before_any_charge(
    any_api: Api, route: str
) -> None:
    """gpt-image-2 costs 26 credits: a cap of 25 is a 422 naming the field."""
    body = {**GPT, "routing": {"max_price_credits": 25}}
    status, error = await _refused(any_api, route, body)
    assert status == 422
    assert error["code"] == "price_above_max"
    field = error["param"] if route == "/v1/images/generations" else error["field"]
    assert field == "routing.max_price_credits"
    assert "26" in error["message"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("routing", "field", "words"),
    [
        (
            {"only": ["fal", "foo"]},
            "routing.only[1]",
            "unknown provider 'foo' for model 'flux-dev'",
        ),
        ({"ignore": ["fal", "wavespeed", "replicate"]}, "routing", "no provider"),
        ({"max_cost_usd": 0.001}, "routing", "no provider"),
    ],
)
async def test_preferences_the_catalog_cannot_meet_are_422(
    api: Api, route: str, routing: dict[str, Any], field: str, words: str
) -> None:
    """An unknown provider, or nothing left to call, is a 422 naming the field."""
    status, error = await _refused(api, route, {**FLUX, "routing": routing})
    assert status == 422
    assert error["code"] == "invalid_routing"
    assert (error["param"] if route == "/v1/images/generations" else error["field"]) == field
    assert words in error["message"]


@pytest.mark.parametrize("route", ROUTES)
async def test_malformed_preferences_are_422(api: Api, route: str) -> None:
    """An unknown key or a wrong type inside ``routing`` is a validation error."""
    for routing in ({"sort": "fastest"}, {"onl": ["fal"]}, {"allow_fallbacks": "no"}):
        status, error = await _refused(api, route, {**FLUX, "routing": routing})
        assert status in (400, 422), error
        field = error["param"] if route == "/v1/images/generations" else error["field"]
        assert field.startswith("routing."), error


@pytest.mark.parametrize("route", ROUTES)
async def test_max_cost_is_a_finite_number_never_coerced(any_api: Api, route: str) -> None:
    """``max_cost_usd`` true, "0.1", Infinity or NaN is a 422 naming it, nothing charged (an
    infinity was once taken, stored as ``Infinity``, and its job could never be written
    final: re-leased and re-called, never refunded)."""
    for value in (True, "0.1", float("inf"), float("nan")):
        body = {**FLUX, "routing": {"max_cost_usd": value}}
        status, error = await _refused(any_api, route, body)
        assert status in (400, 422), (value, error)
        field = error["param"] if route == "/v1/images/generations" else error["field"]
        assert field == "routing.max_cost_usd", (value, error)
    job = await run(
        any_api, await any_api.key(credits=1000), route, {**FLUX, "routing": {"max_cost_usd": 1}}
    )
    assert job["status"] == "completed"


async def test_openai_sdk_passes_routing_in_extra_body(api: Api) -> None:
    """The official SDK sends ``routing`` through ``extra_body``; it steers the job."""
    token = await api.key(credits=1000)
    client = AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key=token, max_retries=0)
    raw = await client.images.with_raw_response.generate(
        model="gpt-image-2", prompt="a red kite", extra_body={"routing": {"only": ["openai"]}}
    )
    assert raw.parse().data
    job = await api.wait_final(token, raw.headers["x-imagerouter-job-id"])
    assert job["result"]["provider"] == "openai"
    assert skips(job) == {"fal": "routing_only", "wavespeed": "routing_only"}


async def test_openapi_documents_routing_on_both_request_bodies(api: Api) -> None:
    """The OpenAPI document describes ``routing`` on the job and OpenAI request bodies."""
    doc = await (await api.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    fields = set(schemas["RoutingPreferences"]["properties"])
    assert fields == {
        "order",
        "only",
        "ignore",
        "allow_fallbacks",
        "sort",
        "max_price_credits",
        "max_cost_usd",
    }
    for body in ("ImageRequest", "OpenAIImageRequest"):
        assert "routing" in schemas[body]["properties"]


async def key_with_defaults(api: Api, routing: dict[str, Any]) -> str:
    """A key whose requests default to ``routing`` (as ``keys create --routing`` stores it)."""
    store = api.app[store_key]
    account = await store.create_account(f"defaults-{uuid.uuid4().hex}")
    await store.grant_credits(account.id, 1000, "test")
    minted = mint_key(account.id, "defaults", time.time(), json.dumps(routing))
    await store.create_api_key(minted.record)
    return minted.token


@pytest.mark.parametrize("route", ROUTES)
async def test_key_defaults_apply_and_the_request_overrides_them_field_by_field(
    any_api: Api, route: str
) -> None:
    """A key's defaults steer its jobs and are stored on them; a request's own ``only``
    replaces the default ``only`` while the default ``ignore`` still holds."""
    token = await key_with_defaults(any_api, {"only": ["wavespeed"], "ignore": ["fal"]})
    job = await run(any_api, token, route, GPT)
    assert job["result"]["provider"] == "wavespeed"
    assert job["request"]["routing"]["only"] == ["wavespeed"]
    assert skips(job) == {"fal": "routing_only", "openai": "routing_only"}

    mine = await run(any_api, token, route, {**GPT, "routing": {"only": ["fal", "openai"]}})
    assert mine["result"]["provider"] == "openai"
    assert mine["request"]["routing"]["only"] == ["fal", "openai"]
    assert mine["request"]["routing"]["ignore"] == ["fal"]
    assert skips(mine) == {"fal": "routing_ignore", "wavespeed": "routing_only"}

    before = await balance(any_api, token)
    capped = await any_api.client.post(
        route, json={**GPT, "routing": {"max_price_credits": 1}}, headers=any_api.auth(token)
    )
    assert capped.status == 422
    assert await balance(any_api, token) == before == 1000 - 2 * 26
