"""Job events across replicas: an SSE stream on a replica that runs no jobs sees every event
of jobs other replicas run, and resumes on another replica after ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.replicas.fleet import submit

pytestmark = pytest.mark.slow


async def _sse(response: aiohttp.ClientResponse, count: int) -> list[tuple[int, str, dict]]:
    """The SSE events of ``response`` up to its ``count``-th lifecycle event (job.progress
    events, which a queue provider adds, are kept but not counted): (id, type, data)."""
    events: list[tuple[int, str, dict]] = []
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
                if sum(kind != "job.progress" for _, kind, _ in events) == count:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return events


async def test_sse_on_one_replica_follows_jobs_run_by_others(make_fleet) -> None:
    """Replica A runs no workers; its SSE stream of the account shows the queued, processing
    and completed events of jobs submitted to B and run by B or C, in id order, and replica C
    serves the same events after the stream's Last-Event-ID."""
    fleet = await make_fleet({}, args={0: ["--workers", "0"]})
    token, _, _ = await fleet.key("acme")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        stream_headers = {**headers, "Accept": "text/event-stream"}
        async with session.get(
            f"{fleet.replicas[0].url}/v1/events", headers=stream_headers
        ) as stream:
            assert stream.status == 200
            await asyncio.sleep(0.2)  # the stream starts at the newest event
            jobs = [(await submit(session, fleet.replicas, 1, token, f"k{n}"))[0] for n in range(3)]
            events = await asyncio.wait_for(_sse(stream, 9), 20)
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(ids)
    for job in jobs:
        assert [t for _, t, d in events if d["job_id"] == job and t != "job.progress"] == [
            "job.queued",
            "job.processing",
            "job.completed",
        ]
    cut = ids[3]
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            f"{fleet.replicas[2].url}/v1/events", headers={**headers, "Last-Event-ID": str(cut)}
        ) as page,
    ):
        body = await page.json()
    assert [e["id"] for e in body["data"]] == ids[4:]
