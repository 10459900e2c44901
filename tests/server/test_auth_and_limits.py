"""API keys (401s, revocation, secrets never echoed) and per-key rate limits (429s)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from imagerouter.server.keys import store_key
from tests.helpers.api import Api, ApiFactory

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic abc"}, "malformed Authorization header"),
        ({"Authorization": "Bearer sk-not-ours"}, "invalid API key"),
        ({"Authorization": "Bearer ir_aaaaaaaaaaaa_" + "b" * 43}, "invalid API key"),
    ],
)
async def test_missing_or_bad_key_is_401(api: Api, headers: dict, reason: str) -> None:
    """A missing, malformed or unknown key is a 401 with a clear body and WWW-Authenticate."""
    for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/account")):
        answer = await api.client.request(method, path, json=GOOD, headers=headers)
        body = await answer.json()
        assert answer.status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert reason in body["error"]["message"]
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_tampered_secret_is_401(api: Api) -> None:
    """A key with the right id but a wrong secret is refused."""
    token = await api.key()
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    answer = await api.client.get("/v1/jobs", headers=api.auth(forged))
    assert answer.status == 401


async def test_revoked_key_is_401(api: Api) -> None:
    """A revoked key stops working."""
    token = await api.key()
    assert (await api.client.get("/v1/jobs", headers=api.auth(token))).status == 200
    key_id = "key_" + token.split("_")[1]
    assert await api.app[store_key].revoke_api_key(key_id)
    answer = await api.client.get("/v1/jobs", headers=api.auth(token))
    assert answer.status == 401
    assert "revoked" in (await answer.json())["error"]["message"]


async def test_revoking_through_the_admin_api_takes_effect_at_once(make_api: ApiFactory) -> None:
    """With the authenticator's cache on (60 s, so that it would otherwise hide the
    revocation), a key revoked through this process's admin API is refused by the very next
    request; revoking it again, or an unknown key, is a 404, and an API key cannot revoke."""
    admin = {"Authorization": "Bearer adm_revoke_test_0123456789"}
    api = await make_api(auth_cache_s=60.0, admin_key="adm_revoke_test_0123456789")
    token, other = await api.key(), await api.key()
    key_id = "key_" + token.split("_")[1]
    for _ in range(2):  # the second answer comes from the cache
        assert (await api.client.get("/v1/jobs", headers=api.auth(token))).status == 200
    path = f"/v1/admin/keys/{key_id}"
    refused = await api.client.delete(path, headers=api.auth(other))
    assert refused.status == 401
    answer = await api.client.delete(path, headers=admin)
    assert answer.status == 200, await answer.text()
    assert await answer.json() == {"id": key_id, "revoked": True}
    after = await api.client.get("/v1/jobs", headers=api.auth(token))
    assert after.status == 401
    assert "revoked" in (await after.json())["error"]["message"]
    posted = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    assert posted.status == 401
    assert (await api.client.get("/v1/jobs", headers=api.auth(other))).status == 200
    assert (await api.client.delete(path, headers=admin)).status == 404
    unknown = await api.client.delete("/v1/admin/keys/key_aaaaaaaaaaaa", headers=admin)
    assert unknown.status == 404
    error = (await unknown.json())["error"]
    assert (error["code"], error["field"]) == ("key_not_found", "key_id")  # as job_not_found: id


async def test_a_revocation_elsewhere_is_bounded_by_the_cache(make_api: ApiFactory) -> None:
    """A revocation this process's authenticator did not make (here the store directly) is
    seen by the store's revocation watch, or at the latest once the cached record expires."""
    api = await make_api(auth_cache_s=0.3)
    token = await api.key()
    key_id = "key_" + token.split("_")[1]
    assert (await api.client.get("/v1/jobs", headers=api.auth(token))).status == 200
    assert await api.app[store_key].revoke_api_key(key_id)
    await asyncio.sleep(0.35)
    assert (await api.client.get("/v1/jobs", headers=api.auth(token))).status == 401


async def test_only_hashes_are_stored_and_secrets_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """The store holds no key secret, and no response or log line repeats it."""
    caplog.set_level(logging.DEBUG)
    token = await api.key()
    records = await api.app[store_key].list_api_keys()
    assert all(token not in repr(record) for record in records)
    assert records[0].secret_hash != token
    texts = []
    for path in ("/v1/jobs", "/v1/account", "/v1/models", "/v1/providers"):
        texts.append(await (await api.client.get(path, headers=api.auth(token))).text())
    texts.append(
        await (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))).text()
    )
    secret = token.split("_", 2)[2]
    assert not any(secret in text for text in texts)
    assert secret not in caplog.text
    raw = (api.app[store_key].path).read_bytes()
    assert secret.encode() not in raw


async def test_generation_rate_limit_is_429_with_headers(make_api: ApiFactory) -> None:
    """Past the burst a submit is a 429 with Retry-After and the RateLimit headers; reads
    have their own, looser bucket."""
    api = await make_api(
        workers=0,
        rate_limits={
            "generate": {"rate_per_s": 0.01, "burst": 3},
            "read": {"rate_per_s": 100, "burst": 100},
        },
    )
    token = await api.key(credits=1000)
    for left in (2, 1, 0):
        answer = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
        assert answer.status == 202
        assert answer.headers["RateLimit-Policy"] == '"generate";q=3;w=300'
        assert answer.headers["RateLimit"].startswith(f'"generate";r={left};t=')
    answer = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 429
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["policy"] == "generate"
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit"].startswith('"generate";r=0;')
    read = await api.client.get("/v1/jobs", headers=api.auth(token))
    assert read.status == 200
    assert read.headers["RateLimit-Policy"] == '"read";q=100;w=1'
    listing = await read.json()
    assert len(listing["data"]) == 3  # the refused submit stored nothing


async def test_rate_limits_are_per_key(make_api: ApiFactory) -> None:
    """One key's exhausted bucket does not limit another key."""
    api = await make_api(
        workers=0,
        rate_limits={"generate": {"rate_per_s": 0.01, "burst": 1}},
    )
    first, second = await api.key("a"), await api.key("b")
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(first))).status == 202
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(first))).status == 429
    assert (await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(second))).status == 202
