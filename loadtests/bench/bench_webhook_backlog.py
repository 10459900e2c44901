"""A launch's webhooks to one customer endpoint that refuses with a Retry-After: what reaches it
while it refuses, how long the backlog takes, and what it costs in attempts and store writes,
with the receiver's pause (the default) and without it (``webhook_pause_max_s = 0``).

Run: ``python -m loadtests.bench.bench_webhook_backlog`` (about 2 minutes; prints the figures
and writes ``loadtests/bench/results/webhook_backlog.json``).

* Processes on loopback: the mock farm (every provider healthy, a few milliseconds an image),
  ``imagerouter serve`` on SQLite (its defaults for webhooks: 64 attempts in flight, 4 requests
  at once to one receiver growing to 64 while it keeps up), and the customer's endpoint (this
  :mod:`loadtests.bench.endpoint`). The endpoint answers each webhook 204 after ``--delay-ms``,
  holding at most ``--capacity`` at once, and one beyond that at once with ``429`` and
  ``Retry-After: --retry-after`` (a rate-limited endpoint: "fewer at once"). As the second
  endpoint, it first answers everything with ``503`` and the same Retry-After for
  ``--down-s`` from its first webhook (down for a while), then as the first. It notes every
  request's arrival, its answer and its ``webhook-id``.
* The compiled open-loop driver submits ``--rate`` jobs a second for ``--duration`` s (2,000
  by default, in 4 s: their webhooks come faster than the endpoint's 160 a second), and the
  run waits, at most ``--max-s``, until every webhook is delivered or the rest are due more
  than ``--later-s`` from now (a webhook refused twice is due again 5 minutes later on the
  schedule: the run then ends with it pending).
* Figures, each endpoint and configuration: the webhooks delivered and delivered more than
  once; the refusals (429 and 503), and of them **the requests that came while the endpoint
  was down**; the attempts a delivered webhook took (the store's attempt log over its
  deliveries); the webhooks given back unsent, by why (the server's ``/metrics``); and the
  time from the first submit to the last delivery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtests.bench.bench_end_to_end import (
    BODY,
    SCENARIO,
    api_request,
    server_process,
    wait_until,
)
from loadtests.bench.common import farm_server, free_port, scratch_dir, wait_for_http, write_results
from loadtests.bench.endpoint import endpoint_command
from loadtests.bench.http_load import CLIENT_CPU, Target, open_loop, pinned
from loadtests.processes import stop_process

#: The server's webhook settings: its defaults (attempts in flight, the floor and ceiling of
#: requests at once to one receiver).
WEBHOOKS = (64, 4, 64)
CONFIGURATIONS = {"paused (default)": 60.0, "no pause": 0.0}


@contextlib.contextmanager
def receiver_process(tmp: Path, args: argparse.Namespace, down_s: float) -> Iterator[str]:
    """The endpoint (:mod:`loadtests.bench.endpoint`) on core 0, refusing with 429 and the
    Retry-After beyond its capacity, down for ``down_s`` at first; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        *endpoint_command(
            port,
            delay_ms=args.delay_ms,
            capacity=args.capacity,
            refusal=429,
            retry_after=args.retry_after,
            down_s=down_s,
        ),
    ]
    with (tmp / "receiver.log").open("wb") as err:
        proc = subprocess.Popen(pinned(command, CLIENT_CPU), stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/_summary", timeout_s=60)
        yield url
    finally:
        stop_process(proc, 10)


# --- one configuration -------------------------------------------------------------------------


def deferrals_in(metrics: str) -> dict[str, int]:
    """The webhooks given back unsent, by why, in a server's `/metrics` text."""
    found = re.findall(
        r'imagerouter_webhook_deferrals_total\{reason="(\w+)"\} ([0-9.e+]+)', metrics
    )
    return {reason: int(float(value)) for reason, value in found}


def run(args: argparse.Namespace, tmp: Path, down_s: float, pause_max_s: float) -> dict[str, Any]:
    """One endpoint's and configuration's run; its figures."""
    scenario = tmp / "scenario.toml"
    scenario.write_text(SCENARIO)
    settings = {"webhook_pause_max_s": pause_max_s}
    with (
        farm_server(str(scenario), cpu=CLIENT_CPU) as (farm, _),
        receiver_process(tmp, args, down_s) as hooks_url,
        server_process(tmp, farm, 64, "none", WEBHOOKS, settings=settings) as (url, token, _, db),
    ):
        api_request("PUT", f"{url}/v1/webhook", token, {"url": f"{hooks_url}/hooks/launch"})
        target = Target(
            f"{url}/v1/jobs",
            body=BODY.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        started = time.time()
        load = open_loop(target, rate=args.rate, duration_s=args.duration, drain_s=5)
        jobs = load["statuses"].get("202", 0)
        connect = f"file:{db}?mode=ro"

        def settled() -> bool:
            """Every webhook delivered, or the rest due later than ``--later-s`` from now."""
            with contextlib.closing(sqlite3.connect(connect, uri=True, timeout=10)) as conn:
                delivered, soon = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER "
                    "(WHERE status = 'delivering' OR (status = 'pending' AND "
                    "next_attempt_at < ?)) FROM deliveries",
                    (time.time() + args.later_s,),
                ).fetchone()
            return delivered >= jobs or (delivered > 0 and soon == 0)

        wait_until(settled, time.monotonic() + args.max_s)
        with urllib.request.urlopen(f"{hooks_url}/_summary", timeout=30) as answer:
            seen = json.load(answer)
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
            deferrals = deferrals_in(answer.read().decode())
        with contextlib.closing(sqlite3.connect(connect, uri=True, timeout=10)) as conn:
            statuses = dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
            attempts = conn.execute(
                "SELECT count(*) FROM delivery_attempts a JOIN deliveries d "
                "ON d.id = a.delivery_id WHERE d.status = 'succeeded'"
            ).fetchone()[0]
    return backlog_figures(seen, jobs, started, statuses, attempts, deferrals)


def backlog_figures(
    seen: dict[str, Any],
    jobs: int,
    started: float,
    statuses: dict[str, int],
    attempts: int,
    given_back: dict[str, int],
) -> dict[str, Any]:
    """A run's figures: from what the endpoint saw (its ``/_summary``), the jobs submitted
    from ``started`` (wall clock), the store's deliveries by status and the attempts of the
    delivered ones, and the webhooks given back unsent by why."""
    log = seen["log"]
    ok = Counter(webhook_id for _, status, webhook_id in log if status == 204)
    succeeded = statuses.get("succeeded", 0)
    last = max((arrived for arrived, status, _ in log if status == 204), default=started)
    return {
        "jobs": jobs,
        "delivered": len(ok),
        "delivered_more_than_once": sum(1 for n in ok.values() if n > 1),
        "deliveries_by_status": statuses,
        "requests": len(log),
        "refused": len(seen["refused_at"]),
        "arrived_while_down": sum(1 for arrived, status, _ in log if status == 503),
        "attempts_per_delivered": round(attempts / succeeded, 3) if succeeded else None,
        "given_back_unsent": given_back,
        "first_submit_to_last_delivery_s": round(last - started, 1),
    }


def figures_line(r: dict[str, Any]) -> str:
    """One run's figures as a line."""
    return (
        f"{r['delivered']} of {r['jobs']} delivered ({r['delivered_more_than_once']} more than "
        f"once) in {r['first_submit_to_last_delivery_s']} s; {r['refused']} refusals; "
        f"{r['arrived_while_down']} while down; {r['attempts_per_delivered']} attempts a "
        f"delivered webhook; given back unsent: {r['given_back_unsent']}; deliveries "
        f"{r['deliveries_by_status']}"
    )


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"{args.rate:g} jobs/s for {args.duration:g} s, their webhooks to one endpoint holding "
        f"{args.capacity} at once for {args.delay_ms:g} ms each ("
        f"{args.capacity / (args.delay_ms / 1000):g}/s) and answering 429 with Retry-After: "
        f"{args.retry_after} beyond; the second endpoint first down (503) for {args.down_s:g} s"
    )
    for name, r in results.items():
        print(f"{name}: {figures_line(r)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--down-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=60.0)
    parser.add_argument("--later-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    results = {}
    endpoints = {"429 beyond capacity": 0.0, f"down {args.down_s:g} s (503)": args.down_s}
    for endpoint, down_s in endpoints.items():
        for name, pause_max_s in CONFIGURATIONS.items():
            with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
                results[f"{endpoint}, {name}"] = run(args, Path(tmp), down_s, pause_max_s)
    report(results, args)
    print(f"wrote {write_results('webhook_backlog', {'args': vars(args), 'runs': results})}")


if __name__ == "__main__":
    main()
