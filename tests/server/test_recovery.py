"""Jobs survive: kill -9 under load and restart, and SIGTERM's clean hand-back, against a real
``imagerouter serve --farm`` process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.server.proc import ServerProcess, cli, write_config, write_scenario

pytestmark = pytest.mark.slow

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse"}
PRICE = 26
CREDITS = 100_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process over a farm whose images take 300 ms (stopped after the test)."""
    process = ServerProcess(
        write_config(tmp_path / "imagerouter.toml"),
        tmp_path / "data",
        write_scenario(tmp_path / "slow.toml", 300),
        tmp_path / "server.log",
    )
    process.start()
    yield process
    process.ensure_stopped()


def _key(server: ServerProcess, account: str) -> str:
    out = cli(
        "keys",
        "create",
        "--account",
        account,
        "--credits",
        str(CREDITS),
        config=server.config,
        data_dir=server.data_dir,
    )
    return out.strip().splitlines()[-1]


async def _submit(session: aiohttp.ClientSession, url: str, token: str, key: str) -> str | None:
    """Submit with an Idempotency-Key; the job id, or None if the server was unreachable."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    try:
        async with session.post(f"{url}/v1/jobs", json=BODY, headers=headers) as answer:
            assert answer.status == 202, await answer.text()
            return (await answer.json())["id"]
    except (TimeoutError, aiohttp.ClientConnectionError):
        return None


async def _count(session: aiohttp.ClientSession, url: str, token: str, status: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    params = {"status": status, "limit": "100"}
    async with session.get(f"{url}/v1/jobs", params=params, headers=headers) as answer:
        return len((await answer.json())["data"])


async def _wait_all_final(session: aiohttp.ClientSession, url: str, token: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = await _count(session, url, token, "queued")
        active += await _count(session, url, token, "processing")
        if active == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("jobs still active after 60 s")


def _audit(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "jobs": one("SELECT count(*) FROM jobs"),
            "by_status": dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")),
            "debits": one("SELECT count(*) FROM ledger WHERE kind = 'debit'"),
            "refunds": one("SELECT count(*) FROM ledger WHERE kind = 'refund'"),
            "balance": one("SELECT sum(balance) FROM accounts"),
            "ledger_sum": one("SELECT sum(amount) FROM ledger"),
            "completed_events": one("SELECT count(*) FROM events WHERE type = 'job.completed'"),
            "twice_final": one(
                "SELECT count(*) FROM (SELECT job_id FROM events WHERE type IN "
                "('job.completed', 'job.failed', 'job.canceled') GROUP BY job_id "
                "HAVING count(*) > 1)"
            ),
            "requeued": [
                json.loads(row[0])["reason"]
                for row in conn.execute("SELECT data FROM events WHERE type = 'job.queued'")
                if "reason" in json.loads(row[0])
            ],
            "max_runs": one("SELECT max(runs) FROM jobs"),
        }


async def test_kill_9_under_load_loses_nothing_and_charges_once(server: ServerProcess) -> None:
    """kill -9 mid-load, restart: every submit is exactly one job, each completes once, and
    the credits add up (one debit per job, no refund, balance = grants - prices)."""
    token = _key(server, "load")
    total, ids = 120, {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # Offer 120 submits over ~1.2 s; kill the server once jobs are running.
        async def offer(number: int) -> None:
            await asyncio.sleep(number * 0.01)
            ids[number] = await _submit(session, server.url, token, f"k{number}")

        load = [asyncio.ensure_future(offer(n)) for n in range(total)]
        for _ in range(200):
            if await _count(session, server.url, token, "processing") >= 4 and len(ids) > 30:
                break
            await asyncio.sleep(0.02)
        server.kill()
        await asyncio.gather(*load)
        lost = [n for n, job_id in ids.items() if job_id is None]
        assert lost, "the kill should have interrupted some submits"

        server.start()
        for number in lost:  # clients retry with the same Idempotency-Key
            ids[number] = await _submit(session, server.url, token, f"k{number}")
        assert all(ids.values())
        await _wait_all_final(session, server.url, token)
    assert server.terminate() == 0

    audit = _audit(server.data_dir / "imagerouter.db")
    assert len(set(ids.values())) == total == audit["jobs"]
    assert audit["by_status"] == {"completed": total}
    assert audit["completed_events"] == total
    assert audit["twice_final"] == 0
    assert audit["debits"] == total
    assert audit["refunds"] == 0
    assert audit["balance"] == audit["ledger_sum"] == CREDITS - PRICE * total
    assert "lease_expired" in audit["requeued"]
    assert audit["max_runs"] >= 2


async def test_sigterm_hands_back_running_jobs_and_exits_cleanly(tmp_path: Path) -> None:
    """On SIGTERM the server stops taking jobs, hands back the ones it could not finish in
    its grace time, exits 0; after a restart they complete, charged once."""
    server = ServerProcess(
        write_config(tmp_path / "imagerouter.toml", shutdown_grace_s=0.2, lease_s=30.0),
        tmp_path / "data",
        write_scenario(tmp_path / "slow.toml", 1500),
        tmp_path / "server.log",
    )
    try:
        server.start()
        token = _key(server, "term")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            ids = [await _submit(session, server.url, token, f"t{n}") for n in range(4)]
            for _ in range(200):
                if await _count(session, server.url, token, "processing") == 4:
                    break
                await asyncio.sleep(0.02)
            assert server.terminate() == 0
            audit = _audit(server.data_dir / "imagerouter.db")
            assert audit["by_status"] == {"queued": 4}
            assert audit["requeued"].count("shutdown") == 4
            # and it says so: an operator sees a replica hand its jobs back
            assert "stopped: 4 jobs handed back to the queue" in server.log.read_text()
            server.start()  # long leases: only a clean hand-back lets these run at once
            await _wait_all_final(session, server.url, token)
            # the calls the shutdown stopped are on the jobs, beside the next run's
            headers = {"Authorization": f"Bearer {token}"}
            for job_id in ids:
                async with session.get(f"{server.url}/v1/jobs/{job_id}", headers=headers) as got:
                    attempts = (await got.json())["attempts"]
                stopped = [a for a in attempts if a["outcome"] == "canceled"]
                assert [a["run"] for a in stopped] == [1], attempts
                assert attempts[-1]["outcome"] == "ok", attempts
        assert server.terminate() == 0
        audit = _audit(server.data_dir / "imagerouter.db")
        assert audit["by_status"] == {"completed": 4}
        assert len(set(ids)) == 4
        assert audit["debits"] == 4
        assert audit["twice_final"] == 0
    finally:
        server.ensure_stopped()
