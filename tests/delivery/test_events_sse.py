"""Live job events over SSE: ids from the store, Last-Event-ID resume, heartbeats, end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import ClientResponse

from imagerouter.server.keys import streams_key
from mockproviders import Farm
from tests.delivery.conftest import Api
from tests.polling import eventually

SSE = {"Accept": "text/event-stream"}


@dataclass
class Stream:
    """An SSE response read event by event."""

    response: ClientResponse
    comments: list[str] = field(default_factory=list)

    async def next(self, timeout_s: float = 10.0) -> dict | None:
        """The next event as ``{"id", "event", "data"}``, or None at the end of the stream."""
        fields: dict = {}
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if fields:
                        return fields
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                fields[name] = json.loads(value) if name == "data" else value


async def _open(api: Api, token: str, path: str, last: int | None = None) -> Stream:
    headers = {**api.auth(token), **SSE}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    response = await api.client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return Stream(response)


def _slow(farm: Farm, ms: float = 400) -> None:
    for name in ("openai", "fal", "wavespeed"):
        farm.set_faults(name, {"generation_ms": {"dist": "fixed", "p50": ms}})


async def _all_events(api: Api, token: str, path: str, after: int = 0) -> list[dict]:
    status, page = await api.call("GET", f"{path}?after={after}&limit=500", token)
    assert status == 200, page
    return page["data"]


async def _until_streams_close(api: Api) -> None:
    await eventually(
        lambda: not len(api.app[streams_key]), timeout_s=5, what="disconnected streams to close"
    )


async def test_a_job_stream_resumed_with_last_event_id_misses_and_repeats_nothing(
    api: Api, farm: Farm
) -> None:
    """A client that reads the first event, disconnects, and reconnects with Last-Event-ID
    after the job finished sees queued, processing, completed, each exactly once, with the
    store's ids; the stream ends after the final event."""
    _slow(farm)
    token = await api.key()
    job = await api.submit(token)
    path = f"/v1/jobs/{job['id']}/events"
    first = await _open(api, token, path)
    seen = [await first.next()]
    first.response.close()  # the client goes away mid-job
    await _until_streams_close(api)
    await api.wait_final(token, job["id"])
    second = await _open(api, token, path, last=int(seen[0]["id"]))
    while (event := await second.next()) is not None:
        seen.append(event)
    stored = await _all_events(api, token, path)
    assert [int(e["id"]) for e in seen] == [e["id"] for e in stored]
    lifecycle = [e for e in seen if e["event"] != "job.progress"]  # fal adds progress events
    assert [e["event"] for e in lifecycle] == ["job.queued", "job.processing", "job.completed"]
    assert [e["data"]["data"]["status"] for e in lifecycle] == [
        "queued",
        "processing",
        "completed",
    ]
    assert all(e["data"]["job_id"] == job["id"] for e in seen)
    assert await second.next() is None  # ended, not idling


async def test_the_account_stream_survives_many_reconnects(api: Api, farm: Farm) -> None:
    """Following /v1/events across a reconnect after every other event, while three jobs run,
    yields exactly the account's events in id order, none missed, none repeated."""
    _slow(farm, 150)
    token = await api.key()
    other = await api.key("someone-else")
    stream = await _open(api, token, "/v1/events")
    start = await api.call("GET", "/v1/events?limit=500", token)
    floor = start[1]["last_event_id"]
    jobs = [(await api.submit(token))["id"] for _ in range(3)]
    await api.submit(other)
    seen: list[dict] = []
    finals = 0
    while finals < len(jobs):
        for _ in range(2):
            event = await stream.next()
            assert event is not None
            seen.append(event)
            finals += event["event"] in ("job.completed", "job.failed", "job.canceled")
            if finals == len(jobs):
                break
        stream.response.close()
        stream = await _open(api, token, "/v1/events", last=int(seen[-1]["id"]))
    stream.response.close()
    stored = await _all_events(api, token, "/v1/events", after=floor)
    assert [int(e["id"]) for e in seen] == [e["id"] for e in stored]
    assert {e["data"]["job_id"] for e in seen} == set(jobs)


async def test_idle_streams_get_heartbeats_and_plain_clients_get_json(api: Api) -> None:
    """An idle stream receives heartbeat comments; without Accept: text/event-stream the same
    route answers a JSON page; a bad Last-Event-ID is a 400 naming it."""
    token = await api.key()
    stream = await _open(api, token, "/v1/events")
    async with asyncio.timeout(5):
        while not (await stream.response.content.readline()).startswith(b":"):
            pass
    stream.response.close()
    status, page = await api.call("GET", "/v1/events", token)
    assert status == 200
    assert page["object"] == "list"
    assert page["has_more"] is False
    answer = await api.client.get(
        "/v1/events", headers={**api.auth(token), **SSE, "Last-Event-ID": "soon"}
    )
    body = await answer.json()
    assert answer.status == 400
    assert body["error"]["field"] == "Last-Event-ID"
    status, _missing = await api.call("GET", "/v1/jobs/job_nope/events", token)
    assert status == 404
