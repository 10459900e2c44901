"""Benchmark of several router replicas on PostgreSQL (+ Redis), beside SQLite in one process.

Run: ``python -m loadtests.bench.bench_replicas`` (about 3 minutes; needs PostgreSQL and Redis
on loopback: ``--pg`` and ``--redis`` to point elsewhere). Prints a table and writes
``loadtests/bench/results/replicas.json``.

Method (closed loop, bounded):

* One farm process (every provider answers in ~20 ms), and for each configuration the
  servers as separate ``imagerouter serve`` processes: SQLite (one process, its data dir), or
  1, 2 and 3 replicas sharing one fresh PostgreSQL schema and one Redis prefix.
* **Submit throughput**: the servers run ``--workers 0``; ``--clients`` concurrent clients
  (this process, aiohttp) each send ``POST /v1/jobs`` back to back, round-robin over the
  replicas and over ``--accounts`` API keys, until ``--submits`` are accepted. Figure: accepted
  submits / elapsed seconds, and the latency percentiles.
* **End to end**: fresh schema (or data dir), the servers run their workers (``--workers``
  each); the same clients submit ``--jobs`` jobs and the clock stops when the store shows
  every one completed. Figure: jobs / seconds from the first submit to the last completion.

Each configuration runs ``--repeat`` times (2) and each phase keeps its fastest run, since
other load on a shared machine only ever slows a run down. Every figure is from this one
machine, where the client, the farm, PostgreSQL, Redis and the replicas share its CPUs: more
replicas add capacity only while a CPU is idle (see ``docs/replicas.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from imagerouter.auth import mint_key
from imagerouter.jobs.postgres import PostgresJobStore
from loadtests.bench.common import (
    farm_process,
    farm_server_config,
    free_port,
    median,
    percentile,
    wait_for_http,
    write_results,
)

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk, oil on canvas"}
SCENARIO = """description = "bench_replicas: fast, fault-free"
seed = 1
[providers.openai]
latency_ms = 2
generation_ms = 20
[providers.fal]
latency_ms = 2
generation_ms = 20
[providers.wavespeed]
latency_ms = 2
generation_ms = 20
# Throughput of the replicas, not of image bytes: one-colour PNGs keep the farm and the
# client's CPU out of the figures on a small machine.
[images]
png_bytes = "tiny"
"""


@contextlib.contextmanager
def servers(
    config: Path, count: int, workers: int, tmp: Path
) -> Iterator[tuple[list[str], list[int]]]:
    """``count`` ``imagerouter serve`` processes on ``config``; yields their base URLs and
    pids."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(count):
            port = free_port()
            log = (tmp / f"serve{index}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "imagerouter",
                        "serve",
                        "--config",
                        str(config),
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                        "--data-dir",
                        str(tmp / "data"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for_http(f"{url}/readyz", timeout_s=60)
        yield urls, [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (Linux /proc; 0 elsewhere)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (its backends included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
    return found


class Backend:
    """Where the jobs live for one run: a fresh PostgreSQL schema or a fresh SQLite dir."""

    def __init__(self, kind: str, pg: str, tmp: Path) -> None:
        self.kind, self.pg, self.tmp = kind, pg, tmp
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"

    @property
    def url(self) -> str | None:
        return f"{self.pg}?schema={self.schema}" if self.kind == "postgres" else None

    async def keys(self, accounts: int, credits: int) -> list[str]:
        """``accounts`` API keys, each on its own account with ``credits``."""
        if self.kind == "postgres":
            store: Any = PostgresJobStore(self.url or "", pool_max=2)
        else:
            from imagerouter.jobs.sqlite import SQLiteJobStore

            store = SQLiteJobStore(self.tmp / "data" / "imagerouter.db")
        await store.start()
        try:
            tokens = []
            for n in range(accounts):
                account = await store.create_account(f"bench{n}")
                await store.grant_credits(account.id, credits, "bench")
                minted = mint_key(account.id, "bench", time.time())
                await store.create_api_key(minted.record)
                tokens.append(minted.token)
            return tokens
        finally:
            await store.aclose()

    async def completed(self) -> int:
        """Jobs completed so far."""
        sql = "SELECT count(*) FROM jobs WHERE status = 'completed'"
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.pg, server_settings={"search_path": self.schema})
            try:
                return int(await conn.fetchval(sql))
            finally:
                await conn.close()
        with contextlib.closing(sqlite3.connect(self.tmp / "data" / "imagerouter.db")) as conn:
            return int(conn.execute(sql).fetchone()[0])

    async def drop(self) -> None:
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.pg)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()


async def load(urls: list[str], tokens: list[str], total: int, clients: int) -> dict[str, Any]:
    """Closed loop: ``clients`` senders until ``total`` submits are accepted."""
    targets = itertools.cycle([(u, t) for t in tokens for u in urls])
    latencies: list[float] = []
    errors = 0
    left = total
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def client() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                url, token = next(targets)
                headers = {"Authorization": f"Bearer {token}"}
                sent = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/jobs", json=BODY, headers=headers) as r:
                        await r.read()
                        ok = r.status == 202
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "accepted": len(latencies),
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(median(latencies), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


async def best_of(
    kind: str, replicas: int, farm: dict[str, Any], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """``--repeat`` runs of one configuration; of each phase, the fastest run (other load on
    the machine only ever slows a run down)."""
    runs = [await run_config(kind, replicas, farm, args, tmp, n) for n in range(args.repeat)]
    return {
        "store": kind,
        "replicas": replicas,
        "submit": max((r["submit"] for r in runs), key=lambda r: r["per_s"]),
        "end_to_end": max((r["end_to_end"] for r in runs), key=lambda r: r["completed_per_s"]),
        "runs": runs,
    }


async def run_config(
    kind: str,
    replicas: int,
    farm: dict[str, Any],
    args: argparse.Namespace,
    tmp: Path,
    run: int = 0,
) -> dict[str, Any]:
    """Both phases for one configuration."""
    row: dict[str, Any] = {"store": kind, "replicas": replicas}
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    for phase in ("submit", "end_to_end"):
        work = tmp / f"{kind}{replicas}-{phase}-{run}"
        work.mkdir()
        backend = Backend(kind, args.pg, work)
        server: dict[str, Any] = {"auth_cache_s": 5, "poll_interval_s": 0.5, "lease_s": 30}
        if kind == "postgres":
            server |= {"store": backend.url, "state": args.redis, "state_prefix": prefix}
        config = farm_server_config(work / "imagerouter.toml", farm, server)
        workers = 0 if phase == "submit" else args.workers
        count = args.submits if phase == "submit" else args.jobs
        try:
            with servers(config, replicas, workers, work) as (urls, pids):
                tokens = await backend.keys(args.accounts, 10**9)
                cpu_before = cpu_seconds(pids), cpu_seconds(postgres_pids())
                started = time.perf_counter()
                result = await load(urls, tokens, count, args.clients)
                if phase == "end_to_end":
                    deadline = time.monotonic() + 120
                    while await backend.completed() < result["accepted"]:
                        if time.monotonic() > deadline:
                            result["incomplete"] = True
                            break
                        await asyncio.sleep(0.05)
                    elapsed = time.perf_counter() - started
                    result["completed_per_s"] = round(result["accepted"] / elapsed, 1)
                    result["elapsed_s"] = round(elapsed, 3)
                cpu_after = cpu_seconds(pids), cpu_seconds(postgres_pids())
                per = 1000 / max(1, result["accepted"])
                result["server_cpu_ms"] = round((cpu_after[0] - cpu_before[0]) * per, 3)
                result["postgres_cpu_ms"] = round((cpu_after[1] - cpu_before[1]) * per, 3)
        finally:
            await backend.drop()
        row[phase] = result
        print(f"  {kind} x{replicas} {phase}: {result}", flush=True)
    return row


async def commit_latency(pg: str, count: int = 200) -> float:
    """Milliseconds per commit of the event counter's update, one after another: the event
    log's ceiling is about 1000 / this many event-writing transactions per second."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = PostgresJobStore(f"{pg}?schema={schema}", pool_max=2)
    await store.start()
    await store.aclose()
    conn = await asyncpg.connect(pg, server_settings={"search_path": schema})
    try:
        started = time.perf_counter()
        for _ in range(count):
            async with conn.transaction():
                await conn.execute("UPDATE event_clock SET last_id = last_id")
        return round((time.perf_counter() - started) / count * 1000, 3)
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def main_async(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rows = []
    commit_ms = await commit_latency(args.pg)
    print(f"  PostgreSQL commit of the event counter: {commit_ms} ms", flush=True)
    scenario = tmp / "scenario.toml"
    scenario.write_text(SCENARIO)
    with farm_process(str(scenario)) as farm:
        if args.only in (None, "sqlite"):
            rows.append(await best_of("sqlite", 1, farm, args, tmp))
        for replicas in (1, 2, 3):
            if args.only in (None, f"pg{replicas}"):
                rows.append(await best_of("postgres", replicas, farm, args, tmp))
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "pg_commit_ms": commit_ms,
        "method": "closed loop; see loadtests/bench/bench_replicas.py",
        "params": {
            k: v for k, v in vars(args).items() if k not in ("pg", "redis") and v is not None
        },
        "rows": rows,
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\nPostgreSQL commit (event counter): {results['pg_commit_ms']} ms")
    header = (
        f"{'store':<9}{'replicas':>9}{'submits/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'jobs/s e2e':>12}{'errors':>8}{'srv ms/job':>12}{'pg ms/job':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in results["rows"]:
        s, e = row["submit"], row["end_to_end"]
        print(
            f"{row['store']:<9}{row['replicas']:>9}{s['per_s']:>11}{s['p50_ms']:>9}"
            f"{s['p99_ms']:>9}{e['completed_per_s']:>12}{s['errors'] + e['errors']:>8}"
            f"{e['server_cpu_ms']:>12}{e['postgres_cpu_ms']:>11}"
        )
    print("(srv/pg ms/job: CPU milliseconds per end-to-end job, all replicas / PostgreSQL)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--submits", type=int, default=3000, help="Submits per submit run.")
    parser.add_argument("--jobs", type=int, default=1500, help="Jobs per end-to-end run.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients.")
    parser.add_argument("--accounts", type=int, default=8, help="API keys (accounts) used.")
    parser.add_argument("--workers", type=int, default=32, help="Workers per server.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per config; best kept.")
    parser.add_argument("--only", default=None, help="Run one config: sqlite, pg1, pg2 or pg3.")
    parser.add_argument("--logs", default=None, help="Keep the servers' logs in this folder.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(args.logs or tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(main_async(args, tmp))
    print_table(results)
    print(f"\nwrote {write_results('replicas', results)}")


if __name__ == "__main__":
    main()
