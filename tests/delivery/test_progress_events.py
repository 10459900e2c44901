"""job.progress events: a job in the farm's slow fal queue shows its falling queue position on
SSE, in the client's ``wait`` and (opted in only) as webhooks, on both stores."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner

from imagerouter.cli import main
from imagerouter.client import AsyncClient, ProgressUpdate
from mockproviders import Farm
from tests.delivery.conftest import Api, ApiFactory, Receiver
from tests.delivery.test_events_sse import _open
from tests.server.conftest import store_url

__all__ = ["store_url"]  # the fixture, run on SQLite and on PostgreSQL

#: fal (gpt-image-2's first provider) holds each job 4.5 s in a queue 9 deep, then runs it
#: 1.5 s; the farm's queue_position falls 9 → 0 over the polls.
QUEUED = {"queued_share": 0.75}
SLOW_QUEUE = {"generation_ms": {"dist": "fixed", "p50": 6000}, "queue_depth": 9, **QUEUED}


def _slow_queue(farm: Farm) -> None:
    farm.set_faults("fal", SLOW_QUEUE)


def _base(api: Api) -> str:
    return str(api.client.make_url("")).rstrip("/")


def _check_progress(updates: list[dict[str, Any]]) -> None:
    """fal's IN_QUEUE reports, then IN_PROGRESS; the positions fall and none repeats."""
    statuses = [u["provider_status"] for u in updates]
    assert {u["provider"] for u in updates} == {"fal"}, updates
    queued = [u["queue_position"] for u in updates if u["provider_status"] == "IN_QUEUE"]
    assert len(queued) >= 2, updates
    assert queued == sorted(queued, reverse=True), queued
    assert len(set(queued)) == len(queued), queued
    assert queued[0] > 0
    assert "IN_PROGRESS" in statuses, statuses
    assert statuses.index("IN_PROGRESS") > statuses.index("IN_QUEUE")
    assert all(u["status"] == "processing" for u in updates if "status" in u)


async def test_progress_events_on_sse_show_the_queue_position_falling(
    store_url: str | None, make_api: ApiFactory, farm: Farm
) -> None:
    """A job waiting in fal's busy queue streams job.progress events between
    job.processing and job.completed, with decreasing queue positions."""
    api = await make_api(**({"store": store_url} if store_url else {}))
    _slow_queue(farm)
    token = await api.key()
    job = await api.submit(token)
    stream = await _open(api, token, f"/v1/jobs/{job['id']}/events")
    types: list[str] = []
    updates: list[dict[str, Any]] = []
    for _ in range(200):  # bounded: a handful of events are expected
        event = await stream.next(timeout_s=20)
        if event is None:
            break
        types.append(event["event"])
        if event["event"] == "job.progress":
            updates.append(event["data"]["data"])
    assert types[0] == "job.queued", types
    assert types[-1] == "job.completed", types
    assert types.index("job.progress") > types.index("job.processing")
    _check_progress(updates)
    assert len(updates) < 20  # deduplicated: not one event per poll


async def test_client_wait_reports_progress(api: Api, farm: Farm) -> None:
    """``AsyncClient.wait(on_progress=…)`` hands each update over, falling positions first,
    then returns the completed job."""
    _slow_queue(farm)
    token = await api.key()
    seen: list[ProgressUpdate] = []
    async with AsyncClient(_base(api), token) as client:
        queued = await client.submit("a lighthouse in a slow queue")
        done = await client.wait(queued.id, timeout_s=30, on_progress=seen.append)
    assert done.status == "completed"
    assert all(u.job_id == queued.id for u in seen)
    _check_progress(
        [
            {
                "provider": u.provider,
                "provider_status": u.provider_status,
                "queue_position": u.queue_position,
            }
            for u in seen
        ]
    )
    assert "position" in seen[0].describe()


async def test_progress_webhooks_only_when_the_account_opts_in(
    make_api: ApiFactory, farm: Farm, receiver: Receiver
) -> None:
    """Without ``progress: true`` only the final webhook is sent; with it, job.progress
    webhooks (signed like any other) come first, each with the queue position."""
    api = await make_api()
    _slow_queue(farm)
    token = await api.key()
    status, shown = await api.call("PUT", "/v1/webhook", token, json={"url": receiver.url})
    assert status == 200
    assert shown["progress"] is False
    first = await api.submit(token)
    await api.wait_delivery(token, first["id"], ("succeeded",), timeout_s=30)
    assert [d["event_type"] for d in await api.deliveries(token, first["id"])] == ["job.completed"]
    assert [json.loads(h.body)["type"] for h in receiver.hits] == ["job.completed"]

    status, shown = await api.call(
        "PUT", "/v1/webhook", token, json={"url": receiver.url, "progress": True}
    )
    assert status == 200
    assert shown["progress"] is True
    second = await api.submit(token)

    async def completed_webhook() -> bool:
        types = [json.loads(h.body)["type"] for h in receiver.hits]
        return types.count("job.completed") == 2

    for _ in range(300):  # bounded: ~30 s
        if await completed_webhook():
            break
        await asyncio.sleep(0.1)
    bodies = [json.loads(h.body) for h in receiver.hits[1:]]
    progress = [b["data"] for b in bodies if b["type"] == "job.progress"]
    assert progress
    assert all(p["id"] == second["id"] for p in progress)
    assert all("webhook-signature" in h.headers for h in receiver.hits)
    _check_progress(sorted(progress, key=lambda p: p["event_id"]))
    types = [d["event_type"] for d in await api.deliveries(token, second["id"])]
    assert types[-1] == "job.completed"
    assert set(types[:-1]) == {"job.progress"}


async def test_put_webhook_rejects_a_progress_flag_that_is_not_a_boolean(api: Api) -> None:
    """``progress: "yes"`` is a 422 naming the field, and changes nothing."""
    token = await api.key()
    status, body = await api.call(
        "PUT", "/v1/webhook", token, json={"url": "http://127.0.0.1:9/x", "progress": "yes"}
    )
    assert status == 422
    assert body["error"]["field"] == "progress"
    status, shown = await api.call("GET", "/v1/webhook", token)
    assert status == 200
    assert shown["url"] is None
    assert shown["progress"] is False


async def test_cli_generate_shows_a_progress_line_while_it_waits(api: Api, farm: Farm) -> None:
    """``imagerouter generate`` waits for its job and prints each queue report (one line per
    update when its output is not a terminal), then the image URL."""
    _slow_queue(farm)
    token = await api.key()
    args = ["generate", "a lighthouse", "--url", _base(api), "--key", token, "--timeout", "30"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    queued = [line for line in lines if line.startswith("fal: in queue, position ")]
    positions = [int(line.rsplit(" ", 1)[-1]) for line in queued]
    assert len(positions) >= 2, lines
    assert positions == sorted(positions, reverse=True), positions
    assert any(line.startswith("fal: running") for line in lines), lines
    assert "completed by fal" in result.output
    (image,) = [line for line in lines if "/v1/media/" in line]
    assert image.startswith(f"{_base(api)}/v1/media/"), image  # whole, to fetch as it is
    fetched = await api.client.get(image.removeprefix(_base(api)))
    assert fetched.status == 200


async def test_cli_generate_exits_1_for_a_job_that_failed(api: Api, farm: Farm) -> None:
    """A job that ran and failed (every provider down) is the command's bad outcome: exit 1
    with the job's error on one line, as the CLI's other commands tell a bad outcome (1) from
    a command that could not run (2)."""
    for name in ("openai", "fal", "wavespeed"):
        farm.set_faults(name, {"down": True})
    token = await api.key()
    args = ["generate", "a lighthouse", "--url", _base(api), "--key", token, "--timeout", "30"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 1, result.output
    assert "failed: no_provider_available" in result.output


async def test_progress_events_can_be_turned_off(make_api: ApiFactory, farm: Farm) -> None:
    """``progress_events = false``: the same queued job shows only its lifecycle events."""
    api = await make_api(progress_events=False)
    farm.set_faults(
        "fal", {"generation_ms": {"dist": "fixed", "p50": 2000}, "queue_depth": 4, **QUEUED}
    )
    token = await api.key()
    job = await api.submit(token)
    await api.wait_final(token, job["id"])
    status, page = await api.call("GET", f"/v1/jobs/{job['id']}/events", token)
    assert status == 200
    assert [e["type"] for e in page["data"]] == ["job.queued", "job.processing", "job.completed"]


async def test_no_progress_webhook_follows_the_final_one(
    make_api: ApiFactory, farm: Farm, receiver: Receiver
) -> None:
    """fal's last poll (COMPLETED) writes a progress event just before the job completes: its
    webhook, queued for a claim, once reached the receiver after the final one, handed over
    and sent at once (3 jobs of 3), its body saying "processing" about a finished job. A
    progress webhook whose job is final is not sent (its delivery says why), and the final
    one waits for any of its job's progress webhooks on their way."""
    api = await make_api()
    farm.set_faults("fal", {"generation_ms": {"dist": "fixed", "p50": 2500}})
    token = await api.key()
    status, _ = await api.call(
        "PUT", "/v1/webhook", token, json={"url": receiver.url, "progress": True}
    )
    assert status == 200
    jobs = [(await api.submit(token))["id"] for _ in range(3)]

    def finals() -> int:
        return sum(json.loads(h.body)["type"] == "job.completed" for h in receiver.hits)

    for _ in range(300):  # bounded: ~30 s
        if finals() == len(jobs):
            break
        await asyncio.sleep(0.1)
    assert finals() == len(jobs)
    await asyncio.sleep(1.0)  # bounded: room for a straggler to arrive
    for job_id in jobs:
        bodies = [json.loads(h.body) for h in receiver.hits]
        arrived = [b["type"] for b in bodies if b["data"]["id"] == job_id]
        assert "job.progress" in arrived, arrived
        assert arrived[-1] == "job.completed", arrived
        assert arrived.count("job.completed") == 1
        for delivery in await api.deliveries(token, job_id):
            if delivery["event_type"] == "job.progress" and delivery["status"] != "succeeded":
                assert "not sent" in (delivery["last_error"] or ""), delivery


async def test_a_progress_webhook_retried_after_its_job_ended_is_not_sent(
    make_api: ApiFactory, farm: Farm, receiver: Receiver
) -> None:
    """The first progress webhook answered 500: its retry (the schedule's 5 s, ×0.6 here) is
    due after the job completed and its final webhook went out. The retry sends its body fixed
    at the first attempt, so the check at body time never ran again: it must run at every
    attempt, and the retry is not sent."""
    api = await make_api(webhook_retry_scale=0.6)
    farm.set_faults("fal", {"generation_ms": {"dist": "fixed", "p50": 2500}})
    receiver.script = [(500, {})]
    token = await api.key()
    status, _ = await api.call(
        "PUT", "/v1/webhook", token, json={"url": receiver.url, "progress": True}
    )
    assert status == 200
    job_id = (await api.submit(token))["id"]
    retried: dict[str, Any] | None = None
    for _ in range(150):  # bounded: ~15 s, the retry due about 3 s after the first attempt
        deliveries = await api.deliveries(token, job_id)
        retried = next(
            (d for d in deliveries if len(d["log"]) >= 2 and d["event_type"] == "job.progress"),
            None,
        )
        if retried is not None:
            break
        await asyncio.sleep(0.1)
    assert retried is not None, await api.deliveries(token, job_id)
    assert retried["log"][0]["status"] == 500
    assert "not sent" in (retried["last_error"] or ""), retried
    arrived = [json.loads(h.body)["type"] for h in receiver.hits]
    assert arrived[-1] == "job.completed", arrived
