"""Three replicas act as one router: a Retry-After or an open breaker seen by one replica holds
on all of them, and so does a webhook receiver's pause (PostgreSQL store, Redis state, one farm
process)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.metrics import parse_metrics, sample
from tests.replicas.fleet import (
    Fleet,
    Proc,
    Receiver,
    replica_proc,
    start_processes,
    submit,
    until,
)

pytestmark = pytest.mark.slow

BREAKER = {
    "breaker": {
        "consecutive_failures": 3,
        "minimum_calls": 3,
        "open_base_s": 60.0,
        "open_max_s": 60.0,
        "half_open_probes": 1,
    },
    "max_attempts": 4,
    "backoff_base_s": 0.01,
}


async def _final(session: aiohttp.ClientSession, fleet: Fleet, index: int, token: str, job: str):
    url = f"{fleet.replicas[index].url}/v1/jobs/{job}"
    headers = {"Authorization": f"Bearer {token}"}

    async def done() -> dict[str, Any] | None:
        async with session.get(url, headers=headers) as answer:
            body = await answer.json()
        return body if body["status"] in ("completed", "failed", "canceled") else None

    return await until(done, 30, f"job {job} to finish")


async def _run_jobs(session, fleet: Fleet, token: str, replicas: list[int], count: int, tag: str):
    """Submit ``count`` jobs through each of ``replicas`` at once; their final bodies."""
    submits = [
        submit(session, fleet.replicas, index, token, f"{tag}-{index}-{n}")
        for index in replicas
        for n in range(count)
    ]
    ids = await asyncio.gather(*submits)
    return await asyncio.gather(*(_final(session, fleet, i, token, job) for job, i in ids))


async def test_a_retry_after_seen_by_one_replica_holds_on_all(make_fleet) -> None:
    """fal answers 429 + Retry-After to replica A; B and C learn the cooldown through Redis
    and send fal nothing inside that window (the farm's counter stays 0)."""
    fleet = await make_fleet({"fal": {"error_rates": {"429": 1.0}, "retry_after_s": 30}})
    token, _, _ = await fleet.key("acme")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        [first] = await _run_jobs(session, fleet, token, [0], 1, "a")
        assert (first["status"], first["result"]["provider"]) == ("completed", "wavespeed")
        assert fleet.stats("fal")["by_status"] == {"429": 1}
        for index in (1, 2):
            await until(
                lambda i=index: (
                    (fleet.providers(i, token)["fal"]["cooldown_remaining_s"] or 0) > 20
                ),
                10,
                f"replica {index} to cool fal down",
            )
        done = await _run_jobs(session, fleet, token, [1, 2], 8, "bc")
    assert {(body["status"], body["result"]["provider"]) for body in done} == {
        ("completed", "wavespeed")
    }
    fal = fleet.stats("fal")
    assert fal["requests"] == 1
    assert fal["inside_retry_after"] == fal["inside_retry_after_raw"] == 0


async def test_a_breaker_opened_on_one_replica_is_open_on_all(make_fleet) -> None:
    """Failures seen by one replica open fal's breaker; the others report it open too and
    route around fal without calling it. (Jobs go to whichever replica's worker claims them
    from the shared queue, so the test waits for the first replica that opens.)"""
    fleet = await make_fleet({"fal": {"down": True}}, router=BREAKER)
    token, _, _ = await fleet.key("acme")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        states: list[str] = []
        for n in range(20):  # bounded: 3 consecutive failures on one replica open it
            [body] = await _run_jobs(session, fleet, token, [0], 1, f"a{n}")
            assert body["status"] == "completed"
            states = [fleet.providers(i, token)["fal"]["breaker"]["state"] for i in range(3)]
            if "open" in states:
                break
        assert "open" in states
        opener = states.index("open")
        others = [i for i in range(3) if i != opener]
        calls = fleet.stats("fal")["requests"]
        for index in others:
            await until(
                lambda i=index: fleet.providers(i, token)["fal"]["breaker"]["state"] == "open",
                10,
                f"replica {index} to open fal's breaker",
            )
        done = await _run_jobs(session, fleet, token, others, 5, "bc")
    assert {body["status"] for body in done} == {"completed"}
    assert {body["result"]["provider"] for body in done} == {"wavespeed"}
    assert fleet.stats("fal")["requests"] == calls


def _metric(replica: Proc, name: str, **labels: str) -> float:
    """One sample of a replica's ``/metrics`` (0 when it has none yet)."""
    with urllib.request.urlopen(f"{replica.url}/metrics", timeout=5) as answer:
        return sample(parse_metrics(answer.read().decode()), name, **labels)


async def test_a_webhook_receiver_paused_by_one_replica_gets_nothing_from_the_others(
    make_fleet, tmp_path: Path
) -> None:
    """A receiver that is down (503, ``Retry-After: 12``) refuses replica A's webhook two round
    trips running: A pauses it. Replica B, started after that, reads the pause from Redis, and
    its jobs' webhooks go into the window not at all (given back unsent, as A's are). Once the
    receiver is up and the window over, every webhook is delivered."""
    async with Receiver(status=503, retry_after="12") as receiver:
        fleet = await make_fleet({}, replicas=1)
        token, _, _ = await fleet.key("acme", webhook=receiver.url)
        paused = "imagerouter_webhook_receivers_paused"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            jobs = [await submit(session, fleet.replicas, 0, token, "a-0")]
            await until(lambda: _metric(fleet.replicas[0], paused) == 1, 20, "A to pause it")
            window_ends = receiver.hits[-1].at + 12
            refused = len(receiver.hits)
            assert refused >= 2
            late = replica_proc(tmp_path, fleet.config, 1)
            try:
                start_processes([late])
                # from Redis (its start waits a second at most for the first sync)
                await until(lambda: _metric(late, paused) == 1, 10, "B to read the pause")
                more = await asyncio.gather(
                    *(submit(session, [late], 0, token, f"b-{n}") for n in range(6))
                )
                fleet.replicas.append(late)  # for _final: it asks the replica at its index
                finals = await asyncio.gather(
                    *(_final(session, fleet, 1, token, j) for j, _ in more)
                )
                assert {body["status"] for body in finals} == {"completed"}
                jobs += more
                await until(
                    lambda: (
                        sum(
                            _metric(r, "imagerouter_webhook_deferrals_total", reason="paused")
                            for r in (fleet.replicas[0], late)
                        )
                        >= 6
                    ),
                    10,
                    "the new jobs' webhooks to be given back",
                )
                # nothing went into the window (a slow host's later hits come after its end)
                assert all(hit.at >= window_ends - 0.05 for hit in receiver.hits[refused:])
                receiver.status, receiver.retry_after = 200, None
                ids = {job for job, _ in jobs}
                await until(
                    lambda: ids <= {hit.job_id for hit in receiver.hits}, 40, "every webhook"
                )
            finally:
                late.stop()
    assert all(hit.at >= window_ends - 0.05 for hit in receiver.hits[refused:])


async def test_replicas_send_a_receiver_no_more_at_once_than_the_fleets_limit(make_fleet) -> None:
    """A fixed limit of 2 requests at once to one receiver (``webhook_per_target`` and
    ``webhook_per_target_max``), two replicas: each takes its share, 1, so the receiver,
    holding every webhook 0.3 s, never holds more than 2 at once (each replica on its own
    would send it 2: up to 4 at once). Every webhook is delivered. Which replica runs a job
    and sends its webhook is the shared queue's choice, so the two may not overlap: the
    bound is asserted, not that it is reached."""
    server = {"webhook_per_target": 2, "webhook_per_target_max": 2}
    async with Receiver(delay_s=0.3) as receiver:
        fleet = await make_fleet({}, replicas=2, server=server)
        token, _, _ = await fleet.key("acme", webhook=receiver.url)
        senders = "imagerouter_webhook_senders"
        await until(
            lambda: all(_metric(r, senders) == 2 for r in fleet.replicas), 10, "two senders"
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            finals = await _run_jobs(session, fleet, token, [0, 1], 8, "share")
        assert {body["status"] for body in finals} == {"completed"}
        ids = {body["id"] for body in finals}
        await until(lambda: ids <= {hit.job_id for hit in receiver.hits}, 40, "every webhook")
    assert 1 <= receiver.at_once.most <= 2


async def test_a_job_another_replica_ends_leaves_the_submitters_active_jobs(make_fleet) -> None:
    """Replica 0 runs no workers, so replica 1 runs and ends every job replica 0 accepted.
    Replica 0 then counts none of them active: it kept each queued for ever, its gauge and
    the memory behind it growing all week."""
    fleet = await make_fleet({}, replicas=2, args={0: ["--workers", "0"]})
    token, _, _ = await fleet.key("acme")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        done = await _run_jobs(session, fleet, token, [0], 6, "elsewhere")
    assert {body["status"] for body in done} == {"completed"}
    submitter = fleet.replicas[0]
    assert _metric(submitter, "imagerouter_job_transitions_total", status="queued") == 6
    await until(
        lambda: _metric(submitter, "imagerouter_jobs_active", status="queued") == 0,
        10,
        "replica 0 to see its jobs end on replica 1",
    )
    assert _metric(submitter, "imagerouter_job_transitions_total", status="completed") == 0
