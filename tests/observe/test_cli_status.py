"""``imagerouter status`` against a running server: the provider table, once and live."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

from imagerouter.cli import main
from imagerouter.cli.status import shared_state_caption
from mockproviders import Farm
from tests.observe.conftest import ADMIN_KEY, ApiFactory

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _status(*args: str) -> Result:
    """Run the command in a thread: it blocks on HTTP to the server on this loop."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, ["status", *args], env={"COLUMNS": "160"})


def _url(api) -> str:
    server = api.client.server
    assert isinstance(server, TestServer)
    return str(server.make_url("")).rstrip("/")


async def test_status_shows_providers_from_the_api(make_api: ApiFactory, farm: Farm) -> None:
    """With an API key the rows come from /v1/providers: breaker, health, cooldown per provider."""
    api = await make_api(farm, {"router": {"breaker": {"consecutive_failures": 2}}})
    token = await api.key()
    farm.set_faults("fal", {"error_rates": {"503": 1.0}})
    for number in range(3):
        accepted = await api.submit(token, f"p{number}")
        await api.wait_final(token, accepted["id"])
    result = await _status("--url", _url(api), "--key", token, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"openai", "fal", "wavespeed", "replicate"}
    assert rows["fal"]["breaker"] == "open"
    assert rows["wavespeed"]["breaker"] == "closed"
    assert rows["fal"]["health"] < rows["wavespeed"]["health"]
    table = await _status("--url", _url(api), "--key", token)
    assert table.exit_code == 0, table.output
    for text in ("fal", "wavespeed", "open", "closed", "health"):
        assert text in table.output
    assert "shared state: local" in table.output  # no Redis here: the replica's own state


async def test_status_with_the_admin_key_adds_the_last_minute(
    make_api: ApiFactory, farm: Farm
) -> None:
    """With the admin key it shows the dashboard's figures: success rate, jobs/s, next probe."""
    api = await make_api(farm)
    token = await api.key()
    accepted = await api.submit(token)
    await api.wait_final(token, accepted["id"])
    result = await _status("--url", _url(api), "--key", ADMIN_KEY, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["fal"]["calls"] == 1
    assert rows["fal"]["success_rate"] == 1.0
    watched = await _status(
        "--url", _url(api), "--key", ADMIN_KEY, "--watch", "--count", "2", "--interval", "0.2"
    )
    assert watched.exit_code == 0, watched.output
    assert "jobs/s" in watched.output
    assert "shared state: local" in watched.output  # the admin snapshot carries it too


async def test_status_explains_refusals_and_absent_servers(
    make_api: ApiFactory, farm: Farm
) -> None:
    """A missing key and a server that does not answer each end with exit 2 and a hint."""
    api = await make_api(farm)
    refused = await _status("--url", _url(api))
    assert refused.exit_code == 2
    assert "--key" in refused.output
    away = await _status("--url", "http://127.0.0.1:9", "--key", "x")
    assert away.exit_code == 2
    assert "cannot reach" in away.output


async def test_status_shows_the_pace_a_key_learned_from_its_429s(
    make_api: ApiFactory, farm: Farm
) -> None:
    """fal's key limited to 2 submits a second with one token saved: a burst of 6 jobs gets
    429s, and fal is paced from then on; `status` (both sources) and the dashboard's snapshot
    show the rate, the others say it is not paced; /metrics has a gauge for fal alone."""
    api = await make_api(farm)
    token = await api.key()
    farm.set_faults("fal", {"rate_limit": {"rpm": 120, "burst": 1}})
    accepted = [await api.submit(token, f"p{number}") for number in range(6)]
    for job in accepted:
        await api.wait_final(token, job["id"])
    assert farm.stats()["providers"]["fal"]["by_status"]["429"] >= 1
    for key in (token, ADMIN_KEY):
        result = await _status("--url", _url(api), "--key", key, "--json")
        assert result.exit_code == 0, result.output
        rows = {row["name"]: row for row in json.loads(result.output)}
        assert rows["fal"]["pace_per_s"] > 0, key
        assert rows["openai"]["pace_per_s"] is None
    table = await _status("--url", _url(api), "--key", token)
    rows_shown = {line.split()[1]: line for line in table.output.splitlines() if "│" in line}
    assert re.search(r"\d+\.\d/s", rows_shown["fal"]), rows_shown["fal"]
    assert "/s" not in rows_shown["openai"]
    snapshot = await (await api.client.get("/v1/admin/snapshot", headers=ADMIN)).json()
    by_name = {p["name"]: p for p in snapshot["providers"]}
    assert by_name["fal"]["pace_per_s"] > 0
    assert by_name["wavespeed"]["pace_per_s"] is None
    scraped = await (await api.client.get("/metrics", headers=ADMIN)).text()
    paced = [line for line in scraped.splitlines() if line.startswith("imagerouter_provider_pace")]
    assert len(paced) == 1
    assert paced[0].startswith('imagerouter_provider_pace_per_second{provider="fal"}')


def test_the_caption_says_when_the_shared_state_is_degraded() -> None:
    """While Redis is away the caption says the replica runs on its own state, since when, and
    what that costs (the other replicas' Retry-Afters and limits unseen); healthy, it says so."""
    degraded = shared_state_caption(
        {"backend": "redis", "healthy": False, "degraded_since": 1_800_000_000.0}
    )
    assert degraded is not None
    assert "DEGRADED since" in degraded.plain
    assert "Retry-Afters" in degraded.plain
    healthy = shared_state_caption({"backend": "redis", "healthy": True})
    assert healthy is not None
    assert healthy.plain == "shared state: redis, healthy"
    assert shared_state_caption(None) is None  # an older server says nothing
