"""Replicas' webhooks to one customer endpoint that is down for a while: what reaches it while it
is down when the replicas share its pause through Redis, and when each learns it alone.

Run: ``python -m loadtests.bench.bench_webhook_fleet`` (about 2 minutes; ``--customer busy`` or
``quiet`` for one; needs PostgreSQL and Redis on loopback: ``--pg`` and ``--redis`` to point
elsewhere). Prints the figures and writes ``loadtests/bench/results/webhook_fleet.json``.

* Processes on loopback: the mock farm (every provider healthy, ~20 ms an image), the customer's
  endpoint (:mod:`loadtests.bench.endpoint`: down for a while from its first webhook, answering
  everything ``503`` with a ``Retry-After``; then serving ``--capacity`` at once for
  ``--delay-ms`` each, 429 with the same Retry-After beyond), and for each configuration the
  ``imagerouter serve`` processes on one fresh PostgreSQL schema, with their webhook defaults
  (a receiver paused at most 60 s).
* Two customers (:data:`CUSTOMERS`): a **busy** one, 250 jobs a second for 4 s over two
  replicas, its endpoint down 3 s with ``Retry-After: 1`` (every replica has webhooks in flight
  to it all the time); and a **quiet** one, 12 jobs a second for 20 s over three replicas, its
  endpoint down 15 s with ``Retry-After: 5`` (at most moments a replica has none in flight).
* Configurations: **shared**, the replicas on one Redis prefix (``state``: a pause a 503 earned
  reaches every replica), and **alone**, no Redis (each replica pauses the receiver only once
  it refused that replica two round trips running). One replica on Redis is the baseline.
* This process submits the jobs round-robin over the replicas (paced, a Python client: at most
  250 a second, far below what it or the replicas carry; the figures are what the endpoint saw,
  not the servers' speed), all on one account whose webhook URL is the endpoint, then waits
  (at most ``--max-s``) until every webhook is delivered or the rest are due more than
  ``--later-s`` from now.
* Figures: **the requests that reached the endpoint while it was down**, the webhooks
  delivered, the attempts a delivered webhook took (the store's attempt log), the webhooks
  given back unsent (the replicas' ``/metrics``, summed), and the time from the first submit to
  the last delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from loadtests.bench.bench_end_to_end import api_request
from loadtests.bench.bench_replicas import SCENARIO, Backend, servers
from loadtests.bench.bench_webhook_backlog import (
    backlog_figures,
    deferrals_in,
    figures_line,
    receiver_process,
)
from loadtests.bench.common import (
    farm_process,
    farm_server_config,
    scratch_dir,
    write_results,
)

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk, oil on canvas"}

#: Each customer's replicas, jobs a second and for how long, and its endpoint's outage.
CUSTOMERS: dict[str, dict[str, Any]] = {
    "busy": {"replicas": 2, "rate": 250.0, "duration": 4.0, "down_s": 3.0, "retry_after": "1"},
    "quiet": {"replicas": 3, "rate": 12.0, "duration": 20.0, "down_s": 15.0, "retry_after": "5"},
}


async def submit_paced(urls: list[str], token: str, rate: float, duration_s: float) -> int:
    """``rate`` submits a second for ``duration_s``, round-robin over ``urls``; those accepted."""
    headers = {"Authorization": f"Bearer {token}"}
    count = int(rate * duration_s)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(n: int) -> bool:
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            async with session.post(
                f"{urls[n % len(urls)]}/v1/jobs", json=BODY, headers=headers
            ) as r:
                return r.status == 202

        return sum(await asyncio.gather(*(one(n) for n in range(count))))


async def _settled(pg: str, schema: str, jobs: int, later_s: float) -> bool:
    """Every webhook delivered, or the rest due later than ``later_s`` from now."""
    conn = await asyncpg.connect(pg, server_settings={"search_path": schema})
    try:
        delivered, soon = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER "
            "(WHERE status = 'delivering' OR (status = 'pending' AND next_attempt_at < $1)) "
            "FROM deliveries",
            time.time() + later_s,
        )
    finally:
        await conn.close()
    return delivered >= jobs or (delivered > 0 and soon == 0)


async def _store_figures(pg: str, schema: str) -> tuple[dict[str, int], int]:
    """Deliveries by status, and the attempts of the delivered ones."""
    conn = await asyncpg.connect(pg, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT status, count(*) FROM deliveries GROUP BY status")
        attempts = await conn.fetchval(
            "SELECT count(*) FROM delivery_attempts a JOIN deliveries d "
            "ON d.id = a.delivery_id WHERE d.status = 'succeeded'"
        )
    finally:
        await conn.close()
    return {row[0]: row[1] for row in rows}, int(attempts)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


async def run(
    args: argparse.Namespace, farm: dict[str, Any], tmp: Path, replicas: int, shared: bool
) -> dict[str, Any]:
    """One configuration's run; its figures."""
    backend = Backend("postgres", args.pg, tmp)
    server: dict[str, Any] = {
        "store": backend.url,
        "webhook_allow": ["127.0.0.1/32"],
        "poll_interval_s": 0.5,
    }
    if shared:
        server |= {"state": args.redis, "state_prefix": f"bench:{uuid.uuid4().hex[:8]}"}
    config = farm_server_config(tmp / "imagerouter.toml", farm, server)
    try:
        with (
            receiver_process(tmp, args, args.down_s) as hooks,
            servers(config, replicas, 32, tmp) as (urls, _),
        ):
            [token] = await backend.keys(1, 10**9)
            await asyncio.to_thread(
                api_request, "PUT", f"{urls[0]}/v1/webhook", token, {"url": f"{hooks}/hooks/launch"}
            )
            started = time.time()
            jobs = await submit_paced(urls, token, args.rate, args.duration)
            deadline = time.monotonic() + args.max_s
            while not await _settled(args.pg, backend.schema, jobs, args.later_s):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            seen = json.loads(await asyncio.to_thread(_get, f"{hooks}/_summary"))
            given_back: Counter[str] = Counter()
            for url in urls:
                metrics = await asyncio.to_thread(_get, f"{url}/metrics")
                given_back.update(deferrals_in(metrics.decode()))
            statuses, attempts = await _store_figures(args.pg, backend.schema)
    finally:
        await backend.drop()
    figures = backlog_figures(seen, jobs, started, statuses, attempts, dict(given_back))
    return {"replicas": replicas, "pause_shared": shared, **figures}


async def customer_runs(args: argparse.Namespace) -> dict[str, Any]:
    """One customer's three configurations; their figures."""
    configurations = {
        "1 replica (Redis)": (1, True),
        f"{args.replicas} replicas, pause shared (Redis)": (args.replicas, True),
        f"{args.replicas} replicas, each alone (no Redis)": (args.replicas, False),
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as root:
        scenario = Path(root) / "scenario.toml"
        scenario.write_text(SCENARIO)
        with farm_process(str(scenario)) as farm:
            for name, (replicas, shared) in configurations.items():
                work = Path(root) / f"run{len(results)}"
                work.mkdir()
                results[name] = await run(args, farm, work, replicas, shared)
                print(f"  {name}: {figures_line(results[name])}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--customer", choices=sorted(CUSTOMERS), action="append")
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--max-s", type=float, default=60.0)
    parser.add_argument("--later-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    results = {}
    for customer in args.customer or list(CUSTOMERS):
        run_args = argparse.Namespace(**{**vars(args), **CUSTOMERS[customer]})
        print(
            f"{customer}: {run_args.rate:g} jobs/s for {run_args.duration:g} s over the "
            f"replicas, their webhooks to one endpoint down (503, Retry-After: "
            f"{run_args.retry_after}) for {run_args.down_s:g} s from its first webhook, then "
            f"holding {args.capacity} at once for {args.delay_ms:g} ms each (429 beyond)",
            flush=True,
        )
        results[customer] = asyncio.run(customer_runs(run_args))
    document = {"args": vars(args), "customers": CUSTOMERS, "runs": results}
    print(f"wrote {write_results('webhook_fleet', document)}")


if __name__ == "__main__":
    main()
