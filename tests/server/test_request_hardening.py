"""A client's malformed request is a 4xx naming what is wrong, never a 500, on every store:
JSON nested too deep, NUL characters, values of the wrong type, impossible sizes. Nothing
is stored or charged for any of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagerouter.server.http import MAX_JSON_DEPTH
from tests.helpers.api import Api

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}


def nested(depth: int) -> Any:
    """``depth`` levels of objects: ``{"a": {"a": ... {}}}``."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- depth -------------------------------------------------------------------------------------


async def test_metadata_nested_past_the_limit_is_400_json_too_deep(any_api: Api) -> None:
    """Metadata nested 256 deep is a 400 json_too_deep naming where; nothing is stored."""
    api = any_api
    token = await api.key(credits=100)
    status, body = await api.post(token, "/v1/jobs", {**GOOD, "metadata": nested(256)})
    assert status == 400
    assert body["error"]["code"] == "json_too_deep"
    assert body["error"]["field"].startswith("metadata.a.a")
    assert body["error"]["max_depth"] == MAX_JSON_DEPTH
    await api.assert_nothing_stored(token, 100)


async def test_metadata_at_the_limit_is_accepted(any_api: Api) -> None:
    """The body is level 1, so metadata may nest MAX_JSON_DEPTH - 1 levels; one more is 400."""
    api = any_api
    token = await api.key(credits=100)
    deepest = {**GOOD, "metadata": nested(MAX_JSON_DEPTH - 1)}
    status, body = await api.post(token, "/v1/jobs", deepest)
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["request"]["metadata"] == nested(MAX_JSON_DEPTH - 1)
    too_deep = {**GOOD, "metadata": nested(MAX_JSON_DEPTH)}
    status, body = await api.post(token, "/v1/jobs", too_deep)
    assert (status, body["error"]["code"]) == (400, "json_too_deep")


@pytest.mark.parametrize("path", ["/v1/jobs", "/api/generate/image", "/v1/webhook/secret/rotate"])
async def test_json_ten_thousand_deep_is_400_on_every_route(api: Api, path: str) -> None:
    """JSON too deep for the parser itself is the same 400, whatever route reads it."""
    token = await api.key(credits=100)
    raw = "[" * 10_000 + "]" * 10_000
    answer = await api.client.post(
        path, data=raw, headers=api.auth(token, **{"Content-Type": "application/json"})
    )
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["code"] == "json_too_deep"
    await api.assert_nothing_stored(token, 100)


async def test_too_deep_on_the_openai_route_is_400_in_openais_shape(api: Api) -> None:
    """The OpenAI-compatible route answers the same refusal in OpenAI's error shape."""
    token = await api.key(credits=100)
    raw = '{"prompt": "x", "user": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = await api.client.post(
        "/v1/images/generations",
        data=raw,
        headers=api.auth(token, **{"Content-Type": "application/json"}),
    )
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["code"] == "json_too_deep"
    assert body["error"]["type"] == "invalid_request_error"
    await api.assert_nothing_stored(token, 100)


async def test_webhook_put_too_deep_is_400(api: Api) -> None:
    """PUT /v1/webhook reads its body through the same reader."""
    token = await api.key(credits=100)
    answer = await api.client.put("/v1/webhook", json={"url": nested(100)}, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["code"] == "json_too_deep"
    assert body["error"]["field"].startswith("url.a")


# --- NUL characters and lone surrogates ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "prompt": "a light\u0000house"}, "prompt"),
        ({**GOOD, "metadata": {"a": {"b": "x\u0000"}}}, "metadata.a.b"),
        ({**GOOD, "metadata": {"tags": ["ok", "\u0000"]}}, "metadata.tags[1]"),
        ({**GOOD, "model": "gpt-image-2\u0000"}, "model"),
        ({**GOOD, "webhook_url": "https://example.com/\u0000"}, "webhook_url"),
    ],
)
async def test_nul_in_any_string_is_422_naming_the_field(
    any_api: Api, body: dict, field: str
) -> None:
    """A NUL anywhere in a string is a 422 naming the field, on SQLite (which took it) and
    PostgreSQL (which answered 500); nothing is stored or charged."""
    api = any_api
    token = await api.key(credits=100)
    for path in ("/v1/jobs", "/api/generate/image"):
        status, answer = await api.post(token, path, body)
        assert status == 422, answer
        assert answer["error"]["code"] == "validation_error"
        assert answer["error"]["field"] == field
        assert answer["error"]["message"].startswith(f"{field}: ")
        assert "NUL" in answer["error"]["message"]
    await api.assert_nothing_stored(token, 100)


async def test_nul_in_a_metadata_key_is_422_naming_the_object(any_api: Api) -> None:
    """A key with a NUL is refused too, naming the object that holds it."""
    api = any_api
    token = await api.key(credits=100)
    status, body = await api.post(token, "/v1/jobs", {**GOOD, "metadata": {"a\u0000b": 1}})
    assert status == 422
    assert body["error"]["field"] == "metadata"
    assert "a\\u0000b" in body["error"]["message"]
    await api.assert_nothing_stored(token, 100)


async def test_nul_and_lone_surrogate_on_the_openai_route(any_api: Api) -> None:
    """The OpenAI-compatible route refuses them in OpenAI's shape, naming the param."""
    api = any_api
    token = await api.key(credits=100)
    for raw, param in (
        ('{"prompt": "x\\u0000y"}', "prompt"),
        ('{"prompt": "x", "user": "\\ud800"}', "user"),
    ):
        answer = await api.client.post(
            "/v1/images/generations",
            data=raw,
            headers=api.auth(token, **{"Content-Type": "application/json"}),
        )
        body = await answer.json()
        assert answer.status == 400, body
        assert body["error"]["param"] == param
    await api.assert_nothing_stored(token, 100)


async def test_lone_surrogate_is_422_naming_the_field(any_api: Api) -> None:
    """A string that is not encodable Unicode (a lone surrogate escape) is a 422, not a 500."""
    api = any_api
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/v1/jobs",
        data='{"model": "gpt-image-2", "prompt": "x", "metadata": {"a": "\\udc00"}}',
        headers=api.auth(token, **{"Content-Type": "application/json"}),
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["field"] == "metadata.a"
    assert "surrogate" in body["error"]["message"]
    await api.assert_nothing_stored(token, 100)


async def test_lone_surrogate_as_raw_bytes_is_422_naming_the_field(api: Api) -> None:
    """A lone surrogate written as raw (invalid UTF-8) bytes rather than an escape is the same
    422: a body that is not plain ASCII is always walked."""
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/v1/jobs",
        data=b'{"model": "gpt-image-2", "prompt": "x\xed\xa0\x80"}',
        headers=api.auth(token, **{"Content-Type": "application/json"}),
    )
    body = await answer.json()
    assert answer.status == 422, body
    assert body["error"]["field"] == "prompt"
    await api.assert_nothing_stored(token, 100)


async def test_plain_ascii_nested_one_past_the_limit_is_400(api: Api) -> None:
    """Compact ASCII with no escapes, one level deeper than allowed: still json_too_deep."""
    token = await api.key(credits=100)
    body = {**GOOD, "metadata": nested(MAX_JSON_DEPTH)}  # the body itself is one level more
    answer = await api.client.post(
        "/v1/jobs",
        data=json.dumps(body, separators=(",", ":")),
        headers=api.auth(token, **{"Content-Type": "application/json"}),
    )
    assert (answer.status, (await answer.json())["error"]["code"]) == (400, "json_too_deep")
    await api.assert_nothing_stored(token, 100)


async def test_a_utf16_body_is_still_read(api: Api) -> None:
    """JSON in UTF-16 (ASCII text, so its bytes are all below 0x80, with NUL bytes) is read
    as JSON's encoding detection reads it: the job is accepted."""
    token = await api.key(credits=100)
    answer = await api.client.post(
        "/v1/jobs",
        data=json.dumps(GOOD).encode("utf-16-le"),
        headers=api.auth(token, **{"Content-Type": "application/json"}),
    )
    assert answer.status == 202, await answer.text()


async def test_nul_in_the_webhook_url_is_422(api: Api) -> None:
    """PUT /v1/webhook refuses it before the URL policy or the store sees it."""
    token = await api.key(credits=100)
    answer = await api.client.put(
        "/v1/webhook", json={"url": "https://example.com/\u0000"}, headers=api.auth(token)
    )
    body = await answer.json()
    assert answer.status == 422
    assert body["error"]["field"] == "url"


# --- strict types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", True),
        ("n", False),
        ("n", "2"),
        ("n", 2.0),
        ("seed", True),
        ("seed", "7"),
        ("seed", 7.0),
    ],
)
async def test_numbers_refuse_booleans_strings_and_floats(api: Api, field: str, value: Any) -> None:
    """``n`` and ``seed`` take integers only: a boolean, a numeric string or a float is a 422
    naming the field, where they used to be coerced; nothing is stored."""
    token = await api.key(credits=1000)
    for path in ("/v1/jobs", "/api/generate/image"):
        status, body = await api.post(token, path, {**GOOD, field: value})
        assert status == 422, body
        assert body["error"]["field"] == field
        assert "integer" in body["error"]["message"]
    await api.assert_nothing_stored(token, 1000)


async def test_integers_are_still_taken(api: Api) -> None:
    """A plain integer is accepted as before."""
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", {**GOOD, "n": 2, "seed": 7})
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert (job["request"]["n"], job["request"]["seed"]) == (2, 7)


@pytest.mark.parametrize("value", [True, "2", 2.0])
async def test_openai_n_is_strict(api: Api, value: Any) -> None:
    """The OpenAI-compatible route's ``n`` is strict too (a 400 naming the param)."""
    token = await api.key(credits=1000)
    status, body = await api.post(
        token, "/v1/images/generations", {"prompt": "a lighthouse", "n": value}
    )
    assert status == 400
    assert body["error"]["param"] == "n"
    await api.assert_nothing_stored(token, 1000)


@pytest.mark.parametrize("value", [True, "60"])
async def test_rotate_grace_refuses_booleans_and_strings(api: Api, value: Any) -> None:
    """``grace_s`` is a number: a boolean or a string is a 422 naming it; an integer is fine."""
    token = await api.key(credits=100)
    status, body = await api.post(token, "/v1/webhook/secret/rotate", {"grace_s": value})
    assert status == 422, body
    assert body["error"]["field"] == "grace_s"
    status, body = await api.post(token, "/v1/webhook/secret/rotate", {"grace_s": 60})
    assert status < 300, body


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("１０２４x1024", "size: must be 'auto' or WIDTHxHEIGHT in ASCII digits"),
        (
            "01024x1024",
            "size: must be 'auto' or WIDTHxHEIGHT in ASCII digits without leading zeros",
        ),
        ("1024x1024\n", "size: must be 'auto'"),
        ("1024X1024", "size: must be 'auto'"),
        ("1x1024", "size: width 1 is below the minimum 64"),
        ("1024x63", "size: height 63 is below the minimum 64"),
        ("5000x1024", "size: width 5000 is above the maximum 3840"),
        ("12345678x1024", "size: width 12345678 is above the maximum 3840"),
        ("3840x3840", "size: 3840x3840 is 14745600 pixels, above the maximum 8294400 (3840x2160)"),
    ],
)
async def test_bad_sizes_are_422_saying_precisely_why(api: Api, size: str, message: str) -> None:
    """Full-width digits, leading zeros and out-of-bounds sides are a 422 naming ``size`` and
    the bound broken; nothing is stored."""
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", {**GOOD, "size": size})
    assert status == 422, body
    assert body["error"]["field"] == "size"
    assert body["error"]["message"].startswith(message), body["error"]["message"]
    await api.assert_nothing_stored(token, 1000)


@pytest.mark.parametrize(
    "size",
    ["auto", "1024x1024", "1536x1024", "1024x1536", "1792x1024", "64x64", "3840x2160", "2160x3840"],
)
async def test_every_size_accepted_before_still_is(api: Api, size: str) -> None:
    """auto, the catalog's sizes and both corners of the bounds are accepted unchanged."""
    token = await api.key(credits=100_000)
    status, body = await api.post(token, "/v1/jobs", {**GOOD, "size": size})
    assert status == 202, body
    answer = await api.client.get(f"/v1/jobs/{body['id']}", headers=api.auth(token))
    assert (await answer.json())["request"]["size"] == size


async def test_openai_route_refuses_a_full_width_size(api: Api) -> None:
    """The OpenAI-compatible route refuses it too, naming the param."""
    token = await api.key(credits=1000)
    status, body = await api.post(
        token, "/v1/images/generations", {"prompt": "x", "size": "１０２４x１０２４"}
    )
    assert status == 400
    assert body["error"]["param"] == "size"
    await api.assert_nothing_stored(token, 1000)


async def test_nul_in_a_job_id_is_404_on_every_job_route(any_api: Api) -> None:
    """A job id with a NUL character names no job: 404 job_not_found on every route that takes
    one, on PostgreSQL too (which answered 500: it cannot compare a NUL)."""
    api = any_api
    token = await api.key(credits=100)
    for method, path in (
        ("GET", "/v1/jobs/a%00b"),
        ("DELETE", "/v1/jobs/%00"),
        ("GET", "/v1/jobs/%00/events"),
        ("GET", "/v1/jobs/%00/deliveries"),
        ("POST", "/v1/jobs/%00/deliveries/replay"),
    ):
        answer = await api.client.request(method, path, headers=api.auth(token))
        body = await answer.json()
        assert answer.status == 404, (method, path, body)
        assert body["error"]["code"] == "job_not_found"
        assert body["error"]["field"] == "id"
    await api.assert_nothing_stored(token, 100)


# --- query strings -----------------------------------------------------------------------------


async def test_a_query_parameter_the_route_does_not_read_is_named(api: Api) -> None:
    """Every keyed route reads only the query parameters it declares (the OpenAPI document's):
    any other is a 422 naming it and what the route reads (a 400 in OpenAI's shape on its
    routes), where it was silently ignored on most; a submit with one stores nothing."""
    token = await api.key(credits=100)
    status, job = await api.post(token, "/v1/jobs", GOOD)
    assert status == 202
    for path in (
        f"/v1/jobs/{job['id']}?foo=1",
        f"/v1/jobs/{job['id']}/deliveries?limit=0",
        "/v1/providers?foo=1",
        "/v1/models?verbose=1",
        "/v1/webhook?foo=1",
        "/v1/jobs?limt=5",
        "/v1/account?cursr=5",
    ):
        answer = await api.client.get(path, headers=api.auth(token))
        error = (await answer.json())["error"]
        name = path.split("?")[1].split("=")[0]
        assert (answer.status, error["code"], error["field"]) == (422, "validation_error", name)
        assert "unknown query parameter" in error["message"]
    videos = await api.client.get("/v1/videos?foo=1", headers=api.auth(token))
    assert videos.status == 400
    assert (await videos.json())["error"]["param"] == "foo"
    submit = await api.client.post("/v1/jobs?dry_run=1", json=GOOD, headers=api.auth(token))
    assert submit.status == 422
    assert (await submit.json())["error"]["field"] == "dry_run"
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert [j["id"] for j in listing["data"]] == [job["id"]]
    for path in ("/v1/jobs?limit=5", f"/v1/jobs/{job['id']}/events?after=0", "/healthz?x=1"):
        assert (await api.client.get(path, headers=api.auth(token))).status == 200, path
