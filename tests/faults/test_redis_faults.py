"""Redis fails under a two-replica fleet carrying steady load: first it restarts (its data
gone), then it hangs (SIGSTOP: connections open and silent). Routing never waits on it
beyond its small bound, no request fails, each replica says so on ``/readyz`` and
``/v1/providers`` while it runs on its own state, and sharing resumes when Redis returns: a
Retry-After seen by one replica reaches the other."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import aiohttp
import pytest

from tests.faults.services import OwnRedis
from tests.faults.tally import BODY, Load, settled_books
from tests.replicas.fleet import Fleet, _get_json, until

pytestmark = pytest.mark.slow

TOTAL = 240


def _shared(fleet: Fleet, replica: int, token: str) -> tuple[str, bool, str]:
    """(``/readyz``'s shared_state check, ``/v1/providers``' shared_state.healthy, the
    ``imagerouter_shared_state_healthy`` gauge of ``/metrics``)."""
    url = fleet.replicas[replica].url
    ready = _get_json(f"{url}/readyz", 3)
    providers = _get_json(f"{url}/v1/providers", 3, token)
    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as answer:
        metrics = answer.read().decode()
    gauge = re.search(r"^imagerouter_shared_state_healthy (\S+)$", metrics, re.MULTILINE)
    return (
        ready["checks"]["shared_state"],
        providers["shared_state"]["healthy"],
        gauge[1] if gauge else "missing",
    )


async def test_redis_restarting_and_hanging_fails_no_request(
    fault_counts, make_fleet, own_redis: OwnRedis
) -> None:
    fleet = await make_fleet(
        {name: {"generation_ms": 100} for name in ("fal", "wavespeed", "openai")},
        replicas=2,
        server={"workers": 6},
    )
    token, _, _ = await fleet.key("load", 1_000_000)
    assert [_shared(fleet, i, token) for i in (0, 1)] == [("ok", True, "1.0")] * 2
    # a request that waited on a hung Redis past its bound would time out here and count
    load = Load([r.url for r in fleet.replicas], token, TOTAL, interval_s=0.03, timeout_s=3)
    running = asyncio.ensure_future(load.run())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(own_redis.restart, 1.0)
    await asyncio.sleep(1.5)
    own_redis.pause()
    try:
        for index in (0, 1):
            await until(
                lambda i=index: (
                    _shared(fleet, i, token) == ("degraded: running on local state", False, "0.0")
                ),
                10,
                f"replica {index} to say it runs on local state",
            )
        await asyncio.sleep(1.5)  # the load goes on against a hung Redis
    finally:
        own_redis.resume()
    for index in (0, 1):
        await until(
            lambda i=index: _shared(fleet, i, token) == ("ok", True, "1.0"),
            15,
            f"replica {index} to share state again",
        )
    await running

    found = await settled_books(fleet.fetch)
    fault_counts(load.report("redis-restart-hang", found))
    load.assert_clean(found)
    assert (load.connection_errors, load.unavailable, load.gave_up) == (0, 0, 0)
    assert load.statuses == {202: TOTAL}
    assert found.by_status == {"completed": TOTAL}

    fleet.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 30})
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "after"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fleet.replicas[0].url}/v1/jobs", json=BODY, headers=headers) as r,
    ):
        assert r.status == 202
    await until(
        lambda: (fleet.providers(1, token)["fal"]["cooldown_remaining_s"] or 0) > 20,
        15,
        "replica 1 to learn fal's cooldown after Redis came back",
    )


async def _hang(own_redis: OwnRedis, seconds: float) -> None:
    own_redis.pause()
    try:
        await asyncio.sleep(seconds)
    finally:
        own_redis.resume()


@pytest.mark.parametrize("fault", ["restart", "hang"])
async def test_no_request_goes_into_a_retry_after_window_while_redis_is_away(
    fault_counts, make_fleet, own_redis: OwnRedis, fault: str
) -> None:
    """Two replicas under steady load, fal answering half its calls 429 with a 1 s
    Retry-After, and Redis away for 3 s in the middle (stopped, or hung by SIGSTOP): the farm
    counts no request to fal inside a window it gave either replica (the windows go through
    PostgreSQL too)."""
    fleet = await make_fleet(
        {name: {"generation_ms": 100} for name in ("fal", "wavespeed", "openai")},
        replicas=2,
        server={"workers": 6},
    )
    token, _, _ = await fleet.key("load", 1_000_000)
    fleet.set_faults("fal", {"error_rates": {"429": 0.5}, "retry_after_s": 1})
    load = Load([r.url for r in fleet.replicas], token, 150, interval_s=0.03, timeout_s=3)
    running = asyncio.ensure_future(load.run())
    await asyncio.sleep(0.8)
    if fault == "restart":
        await asyncio.to_thread(own_redis.restart, 3.0)
    else:
        await _hang(own_redis, 3.0)
    await running
    found = await settled_books(fleet.fetch)
    fal = fleet.stats("fal")
    line = load.report(f"redis-{fault}-retry-after", found)
    fault_counts(
        f"{line} fal_retry_after_issued={fal['retry_after_issued']} "
        f"fal_inside_retry_after={fal['inside_retry_after']}"
    )
    load.assert_clean(found)
    assert found.by_status == {"completed": 150}
    assert fal["retry_after_issued"] >= 3, fal
    assert fal["inside_retry_after"] == 0, fal
