"""Each final state sends its webhook: to the job's own URL first, else the account's."""

from __future__ import annotations

import json

from mockproviders import Farm
from tests.delivery.conftest import Api, Receiver


async def test_failed_canceled_and_per_job_webhooks(
    api: Api, receiver: Receiver, farm: Farm
) -> None:
    """A job naming its own webhook_url is delivered there; a failed job's webhook carries its
    error and refund, a canceled one's its reason; jobs of an account without a registered
    URL and without webhook_url send nothing."""
    token = await api.key()
    quiet = await api.submit(token)
    await api.wait_final(token, quiet["id"])
    assert await api.deliveries(token, quiet["id"]) == []
    status, _ = await api.call("PUT", "/v1/webhook", token, json={"url": receiver.url})
    assert status == 200
    own = receiver.url.replace("/hook", "/own")
    mine = await api.submit(token, webhook_url=own, metadata={"n": 1})
    (hit,) = await receiver.wait_hits(1)
    assert hit.path == "/own"
    assert json.loads(hit.body)["data"]["id"] == mine["id"]
    for name in ("openai", "fal", "wavespeed"):
        farm.set_faults(name, {"down": True})
    failed = await api.submit(token, metadata={"n": 2})
    hits = await receiver.wait_hits(2)
    payload = json.loads(hits[1].body)
    assert hits[1].path == "/hook"
    assert payload["type"] == "job.failed"
    data = payload["data"]
    assert (data["id"], data["status"], data["metadata"]) == (failed["id"], "failed", {"n": 2})
    assert data["error"]["code"]
    assert data["output_urls"] == []
    assert data["result"] is None
    assert data["credits"]["refunded"] == data["credits"]["price"] > 0
    for name in ("openai", "fal", "wavespeed"):
        farm.set_faults(name, {"generation_ms": {"dist": "fixed", "p50": 3000}})
    slow = await api.submit(token)
    status, _ = await api.call("DELETE", f"/v1/jobs/{slow['id']}", token)
    assert status == 200
    hits = await receiver.wait_hits(3)
    canceled = json.loads(hits[2].body)
    assert (canceled["type"], canceled["data"]["id"]) == ("job.canceled", slow["id"])
    assert canceled["data"]["error"]["code"] == "canceled"
    assert canceled["timestamp"].endswith("Z")
