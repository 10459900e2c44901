"""Reading, listing and canceling jobs; refunds; tenant isolation."""

from __future__ import annotations

import asyncio
import base64

from imagerouter.server.keys import store_key, workers_key
from mockproviders import Farm
from tests.helpers.api import Api, ApiFactory

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}
PROVIDERS = ("fal", "wavespeed", "openai")


async def _submit(api: Api, token: str, **fields: object) -> str:
    answer = await api.client.post("/v1/jobs", json={**GOOD, **fields}, headers=api.auth(token))
    assert answer.status == 202, await answer.text()
    return (await answer.json())["id"]


async def _account(api: Api, token: str) -> dict:
    return await (await api.client.get("/v1/account", headers=api.auth(token))).json()


async def test_failed_job_is_refunded_once_before_it_is_announced(api: Api, farm: Farm) -> None:
    """With every provider down the job fails, and is refunded exactly once."""
    for name in PROVIDERS:
        farm.set_faults(name, {"down": True})
    token = await api.key(credits=100)
    seen_failed = []

    def on_events(events) -> None:
        for event in events:
            if event.type == "job.failed":
                seen_failed.append(event)

    api.app[store_key].subscribe(on_events)
    job_id = await _submit(api, token)
    job = await api.wait_final(token, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_provider_available"
    assert job["credits"] == {"price": 26, "charged": 26, "refunded": 26}
    assert {a["provider"] for a in job["attempts"]} <= set(PROVIDERS)
    assert all(a["outcome"] in ("error", "skipped") for a in job["attempts"])
    assert any(a["error_class"] == "ProviderUnavailable" for a in job["attempts"])
    account = await _account(api, token)
    assert account["balance"] == 100
    kinds = [(e["kind"], e["amount"]) for e in account["ledger"] if e["job_id"] == job_id]
    assert sorted(kinds) == [("debit", -26), ("refund", 26)]
    assert seen_failed
    assert seen_failed[0].data["refunded"] == 26


async def test_cancel_queued_job_refunds(make_api: ApiFactory) -> None:
    """DELETE on a queued job cancels it and refunds it; a second DELETE is a 409."""
    api = await make_api(workers=0)
    token = await api.key(credits=100)
    job_id = await _submit(api, token)
    answer = await api.client.delete(f"/v1/jobs/{job_id}", headers=api.auth(token))
    body = await answer.json()
    assert answer.status == 200
    assert body["status"] == "canceled"
    assert body["credits"]["refunded"] == 26
    assert body["links"]["cancel"] is None
    assert (await _account(api, token))["balance"] == 100
    again = await api.client.delete(f"/v1/jobs/{job_id}", headers=api.auth(token))
    error = (await again.json())["error"]
    assert again.status == 409
    assert error["code"] == "job_finished"
    assert error["status"] == "canceled"
    assert (await _account(api, token))["balance"] == 100


async def test_cancel_running_job_cancels_its_task_and_refunds(api: Api, farm: Farm) -> None:
    """DELETE on a running job cancels its asyncio task, refunds it, and it stays canceled."""
    farm.set_faults("fal", {"generation_ms": 30_000})
    token = await api.key(credits=100)
    job_id = await _submit(api, token)
    pool = api.app[workers_key]
    for _ in range(200):
        if pool.running:
            break
        await asyncio.sleep(0.02)
    assert pool.running == 1
    answer = await api.client.delete(f"/v1/jobs/{job_id}", headers=api.auth(token))
    assert answer.status == 200
    for _ in range(200):
        if not pool.running:
            break
        await asyncio.sleep(0.02)
    assert pool.running == 0
    job = await (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(token))).json()
    assert job["status"] == "canceled"
    assert job["credits"]["refunded"] == 26
    assert (await _account(api, token))["balance"] == 100
    # the call it abandoned is on the job, as every call is
    assert [(a["provider"], a["outcome"]) for a in job["attempts"]] == [("fal", "canceled")]
    assert job["attempts"][0]["latency_ms"] > 0


async def test_unknown_job_is_404(api: Api) -> None:
    """GET and DELETE of an unknown job id are 404s with the error body."""
    token = await api.key()
    for method in ("GET", "DELETE"):
        answer = await api.client.request(method, "/v1/jobs/job_nope", headers=api.auth(token))
        body = await answer.json()
        assert answer.status == 404
        assert body["error"] == {
            "code": "job_not_found",
            "message": "no job 'job_nope'",
            "field": "id",
        }


async def test_another_accounts_job_is_404(make_api: ApiFactory) -> None:
    """A key sees only its own account's jobs: another account's job is a 404 everywhere."""
    api = await make_api(workers=0)
    alice = await api.key("alice")
    bob = await api.key("bob")
    job_id = await _submit(api, alice)
    for method in ("GET", "DELETE"):
        answer = await api.client.request(method, f"/v1/jobs/{job_id}", headers=api.auth(bob))
        assert answer.status == 404
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(bob))).json()
    assert listing["data"] == []
    mine = await (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(alice))).json()
    assert mine["status"] == "queued"
    account = await _account(api, bob)
    assert account["name"] == "bob"
    assert all(e["job_id"] is None for e in account["ledger"])


async def test_list_filters_by_status_and_paginates(make_api: ApiFactory) -> None:
    """GET /v1/jobs pages newest first with a cursor and filters by status."""
    api = await make_api(workers=0)
    token = await api.key(credits=1000)
    ids = [await _submit(api, token) for _ in range(5)]
    await api.client.delete(f"/v1/jobs/{ids[0]}", headers=api.auth(token))
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (
            await api.client.get("/v1/jobs", params=params, headers=api.auth(token))
        ).json()
        seen += [job["id"] for job in page["data"]]
        assert all(job["attempts"] is None for job in page["data"])
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == ids[::-1]
    queued = await (
        await api.client.get("/v1/jobs", params={"status": "queued"}, headers=api.auth(token))
    ).json()
    assert [job["id"] for job in queued["data"]] == ids[:0:-1]
    canceled = await (
        await api.client.get("/v1/jobs", params={"status": "canceled"}, headers=api.auth(token))
    ).json()
    assert [job["id"] for job in canceled["data"]] == [ids[0]]


async def test_list_rejects_bad_query(api: Api) -> None:
    """A bad status or limit is a 422 naming it; a forged cursor is a 400."""
    token = await api.key()
    answer = await api.client.get("/v1/jobs", params={"status": "done"}, headers=api.auth(token))
    assert answer.status == 422
    assert (await answer.json())["error"]["field"] == "status"
    answer = await api.client.get("/v1/jobs", params={"limit": "0"}, headers=api.auth(token))
    assert answer.status == 422
    assert (await answer.json())["error"]["field"] == "limit"
    # forged: not ours, past the stores' 64 bits (once a 500), negative, full-width digits
    forged = [
        b"zzz",
        b"j99999999999999999999999999",
        b"j9223372036854775808",
        b"j-1",
        "j９".encode(),
    ]
    for cursor in forged:
        text = base64.urlsafe_b64encode(cursor).decode().rstrip("=") if cursor != b"zzz" else "zzz"
        answer = await api.client.get("/v1/jobs", params={"cursor": text}, headers=api.auth(token))
        body = await answer.json()
        assert answer.status == 400, (cursor, body)
        assert (body["error"]["code"], body["error"]["field"]) == ("invalid_cursor", "cursor")
    largest = base64.urlsafe_b64encode(b"j9223372036854775807").decode().rstrip("=")
    answer = await api.client.get("/v1/jobs", params={"cursor": largest}, headers=api.auth(token))
    assert answer.status == 200
    # a parameter given twice is refused, not read as its first value (nor as a set)
    for path in ("/v1/jobs?status=canceled&status=completed", "/v1/account?limit=1&limit=50"):
        answer = await api.client.get(path, headers=api.auth(token))
        error = (await answer.json())["error"]
        assert answer.status == 422
        assert error["field"] == path.split("?")[1].split("=")[0]
        assert "given more than once" in error["message"]
