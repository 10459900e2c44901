"""Idempotency-Key: replays, body mismatches, concurrent requests, account scoping."""

from __future__ import annotations

import asyncio

from mockproviders import Farm
from tests.helpers.api import Api, ApiFactory

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}


async def _balance(api: Api, token: str) -> int:
    return (await (await api.client.get("/v1/account", headers=api.auth(token))).json())["balance"]


async def test_retry_with_same_key_and_body_returns_same_job_once_charged(
    make_api: ApiFactory,
) -> None:
    """The same key and body return the same job and response, charged once."""
    api = await make_api(workers=0)
    token = await api.key(credits=100)
    headers = api.auth(token, **{"Idempotency-Key": "order-1"})
    first = await api.client.post("/v1/jobs", json=GOOD, headers=headers)
    again = await api.client.post(
        "/v1/jobs", json={"prompt": GOOD["prompt"], "model": GOOD["model"]}, headers=headers
    )
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _balance(api, token) == 74
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert len(listing["data"]) == 1


async def test_same_key_with_different_body_is_422(make_api: ApiFactory) -> None:
    """Reusing a key with another body is a 422, and charges nothing more."""
    api = await make_api(workers=0)
    token = await api.key(credits=100)
    headers = api.auth(token, **{"Idempotency-Key": "order-2"})
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=headers)).status == 202
    answer = await api.client.post(
        "/v1/jobs", json={**GOOD, "prompt": "something else"}, headers=headers
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    assert body["error"]["field"] == "Idempotency-Key"
    assert await _balance(api, token) == 74
    # the same body on another route is another request: the message says so, not "body"
    elsewhere = await api.client.post("/api/generate/image", json=GOOD, headers=headers)
    error = (await elsewhere.json())["error"]
    assert (elsewhere.status, error["code"]) == (422, "idempotency_key_reused")
    assert "another route" in error["message"]
    assert await _balance(api, token) == 74


async def test_keys_are_scoped_to_the_account(make_api: ApiFactory) -> None:
    """Two accounts using the same key string get two different jobs."""
    api = await make_api(workers=0)
    alice, bob = await api.key("alice"), await api.key("bob")
    key = {"Idempotency-Key": "shared"}
    a = await (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(alice, **key))).json()
    b = await (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(bob, **key))).json()
    assert a["id"] != b["id"]


async def test_refused_request_does_not_keep_the_key(make_api: ApiFactory) -> None:
    """A 402 stores nothing against the key: after a top-up the same key succeeds."""
    api = await make_api(workers=0)
    token = await api.key("poor", credits=10)
    headers = api.auth(token, **{"Idempotency-Key": "order-3"})
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=headers)).status == 402
    await api.key("poor", credits=100)
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=headers)).status == 202


async def test_concurrent_request_with_same_key_is_409(api: Api, farm: Farm) -> None:
    """While the first request with a key is still being handled, a second one is a 409."""
    farm.set_faults("fal", {"generation_ms": 1500})
    token = await api.key(credits=100)
    headers = api.auth(token, **{"Idempotency-Key": "render-1"})
    body = {"model": "gpt-image-2", "prompt": "a slow lighthouse"}
    first = asyncio.ensure_future(
        api.client.post("/v1/images/generations", json=body, headers=headers)
    )
    for _ in range(200):  # until the first request's job exists (it then waits for the farm)
        listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
        if listing["data"]:
            break
        await asyncio.sleep(0.02)
    second = await api.client.post("/v1/images/generations", json=body, headers=headers)
    error = (await second.json())["error"]
    assert second.status == 409
    assert error["code"] == "idempotency_key_in_flight"
    answer = await first
    assert answer.status == 200
    replay = await api.client.post("/v1/images/generations", json=body, headers=headers)
    assert replay.status == 200
    assert await replay.json() == await answer.json()
    assert await _balance(api, token) == 74


async def test_concurrent_submits_with_same_key_make_one_job(make_api: ApiFactory) -> None:
    """Ten concurrent submits with one key create one job, charged once, all answered alike
    (a plain submit takes the key and creates the job in one transaction)."""
    api = await make_api(workers=0)
    token = await api.key(credits=100)
    headers = api.auth(token, **{"Idempotency-Key": "burst-1"})
    answers = await asyncio.gather(
        *(api.client.post("/v1/jobs", json=GOOD, headers=headers) for _ in range(10))
    )
    assert {answer.status for answer in answers} == {202}
    bodies = [await answer.json() for answer in answers]
    assert len({body["id"] for body in bodies}) == 1
    assert sum("Idempotent-Replayed" in answer.headers for answer in answers) == 9
    assert await _balance(api, token) == 74
