"""POST /v1/jobs and the compatible submit: accepted jobs, and every way a submit is refused."""

from __future__ import annotations

import json
import re

from imagerouter.server.keys import store_key
from tests.helpers.api import FAST_ROUTER, Api, ApiFactory

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}


async def _balance(api: Api, token: str) -> int:
    answer = await api.client.get("/v1/account", headers=api.auth(token))
    return (await answer.json())["balance"]


async def _nothing_stored(api: Api, token: str, balance: int) -> None:
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert listing["data"] == []
    assert await _balance(api, token) == balance


async def test_submit_accepts_charges_and_completes(api: Api) -> None:
    """A valid submit is 202 with id, status, links and Location, is charged, and completes."""
    token = await api.key(credits=100)
    answer = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 202
    # job_ + the millisecond (10) + 20 random characters, all lowercase base32
    assert re.fullmatch(r"job_[a-z2-7]{30}", body["id"])
    assert body["status"] == "queued"
    assert body["links"]["self"] == f"/v1/jobs/{body['id']}"
    assert answer.headers["Location"] == body["links"]["self"]
    assert body["credits"] == {"price": 26, "charged": 26, "refunded": 0}
    assert await _balance(api, token) == 74
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "completed"
    assert job["result"]["images"]
    assert job["result"]["provider"] == "fal"
    attempt = job["attempts"][0]
    assert attempt["provider"] == "fal"
    assert attempt["outcome"] == "ok"
    assert attempt["latency_ms"] is not None
    assert attempt["run"] == 1
    assert job["credits"]["refunded"] == 0
    assert await _balance(api, token) == 74


async def test_bad_field_is_422_with_its_path(api: Api) -> None:
    """A bad field is a 422 naming the field's path and the reason; nothing is stored."""
    token = await api.key(credits=100)
    answer = await api.client.post("/v1/jobs", json={**GOOD, "n": 50}, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["field"] == "n"
    assert "n:" in body["error"]["message"]
    assert "10" in body["error"]["message"]
    answer = await api.client.post(
        "/v1/jobs", json={**GOOD, "size": "huge"}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["field"] == "size"
    answer = await api.client.post(
        "/v1/jobs", json={**GOOD, "colour": "red"}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["field"] == "colour"
    assert "unknown field" in body["error"]["message"]
    for route in ("/v1/jobs", "/v1/images/generations"):  # a blank prompt is an empty one
        answer = await api.client.post(
            route, json={**GOOD, "prompt": " \n\t "}, headers=api.auth(token)
        )
        body = await answer.json()
        assert answer.status in (400, 422), body
        assert body["error"].get("field", body["error"].get("param")) == "prompt"
        assert "more than whitespace" in body["error"]["message"]
    # JSON has no NaN or infinity: echoed back they would read null, so they are refused
    for number in ("NaN", "1e400", "-Infinity"):
        raw = '{"model": "flux-schnell", "prompt": "x", "metadata": {"a": [1, NUMBER]}}'
        raw = raw.replace("NUMBER", number)
        answer = await api.client.post(
            "/v1/jobs", data=raw, headers=api.auth(token, **{"Content-Type": "application/json"})
        )
        body = await answer.json()
        assert answer.status == 422, body
        assert body["error"]["field"] == "metadata.a[1]"  # the path, as a NUL's error names it
        assert "not a number JSON can hold at a[1]" in body["error"]["message"]
    await _nothing_stored(api, token, 100)


async def test_a_model_no_provider_here_serves_is_refused_before_any_charge(
    make_api: ApiFactory,
) -> None:
    """flux-dev's providers are fal, WaveSpeed and Replicate: with the three off, a job for
    it could only fail, so both routes refuse it naming the model, and nothing is charged;
    gpt-image-2 (also OpenAI's) is still served."""
    off = {name: {"enabled": False} for name in ("fal", "wavespeed", "replicate")}
    api = await make_api({**FAST_ROUTER, "providers": off})
    token = await api.key(credits=100)
    for route in ("/v1/jobs", "/v1/images/generations"):
        body = {**GOOD, "model": "flux-dev"}
        answer = await api.client.post(route, json=body, headers=api.auth(token))
        error = (await answer.json())["error"]
        assert answer.status in (400, 422), error
        assert error["code"] == "model_unavailable"
        assert error.get("field", error.get("param")) == "model"
        assert "no provider configured here serves flux-dev" in error["message"]
    await _nothing_stored(api, token, 100)
    status, job = await api.post(token, "/v1/jobs", GOOD)
    assert status == 202, job
    assert (await api.wait_final(token, job["id"]))["status"] == "completed"


async def test_unknown_model_is_400_listing_known_models(api: Api) -> None:
    """An unknown model is a 400 that names it and lists the known models."""
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/v1/jobs", json={**GOOD, "model": "dall-e-9"}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["code"] == "unknown_model"
    assert body["error"]["field"] == "model"
    assert body["error"]["model"] == "dall-e-9"
    assert "gpt-image-2" in body["error"]["known"]
    assert "dall-e-9" in body["error"]["message"]
    await _nothing_stored(api, token, 100)


async def test_non_json_is_400(api: Api) -> None:
    """A body that is not JSON is a 400 invalid_json; nothing is stored."""
    token = await api.key(credits=100)
    headers = {**api.auth(token), "Content-Type": "application/json"}
    answer = await api.client.post("/v1/jobs", data=b"model=gpt-image-2", headers=headers)
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["code"] == "invalid_json"
    assert body["error"]["field"] is None
    await _nothing_stored(api, token, 100)


async def test_a_body_sent_as_another_media_type_is_415(api: Api) -> None:
    """A form or text body (curl's ``-d`` sends a form) is a 415 naming the header, even when
    its text is JSON, and nothing is stored; JSON's own types, with a charset or none said, are
    read."""
    token = await api.key(credits=1000)
    body = json.dumps(GOOD).encode()
    for media_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        headers = {**api.auth(token), "Content-Type": media_type}
        for path in ("/v1/jobs", "/v1/images/generations"):
            answer = await api.client.post(path, data=body, headers=headers)
            assert answer.status == 415, (path, media_type)
            error = (await answer.json())["error"]
            assert error["code"] == "unsupported_media_type"
            assert media_type in error["message"]
            assert "application/json" in error["message"]
    routed = await api.client.post(  # Expect: 100-continue takes aiohttp's way, not the shortcut
        "/v1/jobs",
        data=body,
        headers={**api.auth(token), "Content-Type": "text/plain"},
        expect100=True,
    )
    assert routed.status == 415
    assert (await routed.json())["error"]["field"] == "Content-Type"
    await _nothing_stored(api, token, 1000)
    for headers in (
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "Application/JSON"},
        {"Content-Type": "application/vnd.api+json"},
    ):
        answer = await api.client.post(
            "/v1/jobs", data=body, headers={**api.auth(token), **headers}
        )
        assert answer.status == 202, headers
    unsaid = await api.client.post(
        "/v1/jobs", data=body, headers=api.auth(token), skip_auto_headers=["Content-Type"]
    )
    assert unsaid.status == 202


async def test_body_over_limit_is_413(make_api: ApiFactory) -> None:
    """A body over the configured size limit is a 413; nothing is stored."""
    api = await make_api(max_body_bytes=2048)
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/v1/jobs", json={**GOOD, "prompt": "x" * 5000}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 413
    assert body["error"]["code"] == "body_too_large"
    assert body["error"]["limit_bytes"] == 2048
    await _nothing_stored(api, token, 100)


async def test_short_wallet_is_402_with_balance_and_price(api: Api) -> None:
    """A submit costing more than the balance is a 402 with both; nothing is charged."""
    token = await api.key(credits=10)
    answer = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 402
    assert body["error"]["code"] == "insufficient_credits"
    assert body["error"]["balance"] == 10
    assert body["error"]["price"] == 26
    await _nothing_stored(api, token, 10)


async def test_compat_route_answers_data_job_id(api: Api) -> None:
    """POST /api/generate/image answers 202 {"data": {"jobId"}} for a real, charged job."""
    token = await api.key(credits=100)
    answer = await api.client.post("/api/generate/image", json=GOOD, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 202
    job_id = body["data"]["jobId"]
    job = await api.wait_final(token, job_id)
    assert job["status"] == "completed"
    assert job["credits"]["charged"] == 26


async def test_compat_route_refuses_like_the_main_route(api: Api) -> None:
    """The compatible route refuses bad input with the same error bodies."""
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/api/generate/image", json={"model": "gpt-image-2"}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["field"] == "prompt"


async def test_submit_writes_debit_and_queued_event(api: Api) -> None:
    """The debit and the queued event are written with the job."""
    token = await api.key(credits=100)
    answer = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    job_id = (await answer.json())["id"]
    store = api.app[store_key]
    account = await store.find_account("acme")
    assert account is not None
    events = await store.events_since(account.id, job_id, 0)
    assert events[0].type == "job.queued"
    assert [e.id for e in events] == sorted(e.id for e in events)
    ledger = await store.ledger(account.id)
    assert next((e.kind, e.amount, e.job_id) for e in ledger) == ("debit", -26, job_id)
