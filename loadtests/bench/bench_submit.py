"""Benchmark of the durable submit path (``POST /v1/jobs``) against a bare aiohttp handler.

Run: ``python -m loadtests.bench.bench_submit`` (about 90 s; prints a table and writes
``loadtests/bench/results/submit.json``).

* Two servers, each in its own process, on loopback: ``imagerouter serve`` (auth, rate limit,
  validation, pricing, one SQLite transaction creating and charging the job, group commit)
  and a bare aiohttp app that reads the body and answers 202 with a body of the same shape.
* The load generator (this process) is **open-loop**: at each offered rate it sends request
  ``i`` at ``start + i / rate`` whatever happened to earlier ones, and measures latency from
  that *intended* send time, so a server that stalls is charged for the queue it causes
  (no coordinated omission).
* Each level runs ``--duration`` seconds (5 by default), then waits at most 5 s for stragglers;
  a request still unanswered then counts as an error.

The imagerouter server runs with ``--workers 0`` by default, so that the figures are the
submit path's alone (jobs stay queued); pass ``--workers N`` to also run them on the farm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

LEVELS = (250, 500, 1000, 2000, 4000, 8000)
DURATION_S = 5.0
DRAIN_S = 5.0
BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk, oil on canvas"}
RESULTS = Path(__file__).parent / "results" / "submit.json"
BARE_ANSWER = {
    "id": "job_abcdefghijklmnopqrst",
    "object": "job",
    "status": "queued",
    "created_at": 1_800_000_000.123456,
    "credits": {"price": 26, "charged": 26, "refunded": 0},
    "links": {
        "self": "/v1/jobs/job_abcdefghijklmnopqrst",
        "cancel": "/v1/jobs/job_abcdefghijklmnopqrst",
    },
}


# --- the servers -------------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """The bare handler: read the body, answer 202 with a fixed job-shaped body."""
    from aiohttp import web

    text = json.dumps(BARE_ANSWER)

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            text=text,
            status=202,
            content_type="application/json",
            headers={"Location": BARE_ANSWER["links"]["self"]},
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/v1/jobs", submit)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def _start_imagerouter(tmp: Path, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    config = tmp / "bench.toml"
    config.write_text(
        "[server]\n"
        "auth_cache_s = 60\n"
        "[server.rate_limits.generate]\nrate_per_s = 1000000\nburst = 1000000\n"
        "[server.rate_limits.read]\nrate_per_s = 1000000\nburst = 1000000\n"
    )
    data = tmp / "data"
    cli = [sys.executable, "-m", "imagerouter"]
    created = subprocess.run(
        [*cli, "keys", "create", "--account", "bench", "--credits", str(10**12),
         "--config", str(config), "--data-dir", str(data)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--config", str(config), "--data-dir", str(data), "--port", str(port),
         "--workers", str(workers), "--farm"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    return proc, url, token


def _start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.bench.bench_submit", "--bare-server", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    return proc, url


# --- the open-loop generator -------------------------------------------------------------------


async def _one_level(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    rate: float,
    duration_s: float,
) -> dict[str, Any]:
    """Offer ``rate`` submits a second for ``duration_s``; latencies from intended send times."""
    loop = asyncio.get_running_loop()
    total = int(rate * duration_s)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    payload = json.dumps(BODY).encode()
    headers = {**headers, "Content-Type": "application/json"}

    async def fire(intended: float) -> None:
        try:
            async with session.post(f"{url}/v1/jobs", data=payload, headers=headers) as answer:
                await answer.read()
                status = str(answer.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = type(exc).__name__
        statuses[status] = statuses.get(status, 0) + 1
        if status == "202":
            latencies.append(loop.time() - intended)

    start = loop.time() + 0.05
    tasks: list[asyncio.Task[None]] = []
    sent = 0
    while sent < total:
        now = loop.time()
        while sent < total and start + sent / rate <= now:
            tasks.append(loop.create_task(fire(start + sent / rate)))
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
    _done, pending = await asyncio.wait(tasks, timeout=duration_s + DRAIN_S)
    for task in pending:
        task.cancel()
    elapsed = loop.time() - start
    if pending:
        statuses["unanswered"] = len(pending)
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    accepted = statuses.get("202", 0)
    return {
        "offered_per_s": rate,
        "sent": total,
        "accepted": accepted,
        "accepted_per_s": round(accepted / max(elapsed, duration_s), 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "statuses": statuses,
    }


async def _run(
    targets: dict[str, tuple[str, dict[str, str]]], levels: list[float], duration_s: float
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=duration_s + DRAIN_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for rate in levels:
            for name, (url, headers) in targets.items():  # side by side, level by level
                await _one_level(session, url, headers, min(rate, 200), 0.5)  # warm-up
                row = await _one_level(session, url, headers, rate, duration_s)
                results[name].append(row)
                print(
                    f"  {name:>11} @ {rate:>6.0f}/s: {row['accepted_per_s']:>8.1f} accepted/s  "
                    f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  {row['statuses']}",
                    flush=True,
                )
    return results


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        f"{'offered/s':>10} | {'imagerouter acc/s':>17} {'p50 ms':>8} {'p99 ms':>8} | "
        f"{'bare acc/s':>10} {'p50 ms':>8} {'p99 ms':>8} | {'ratio':>5}"
    ]
    for ours, bare in zip(results["imagerouter"], results["bare"], strict=True):
        ratio = ours["accepted_per_s"] / bare["accepted_per_s"] if bare["accepted_per_s"] else 0
        lines.append(
            f"{ours['offered_per_s']:>10.0f} | {ours['accepted_per_s']:>17.1f} "
            f"{ours['p50_ms']!s:>8} {ours['p99_ms']!s:>8} | {bare['accepted_per_s']:>10.1f} "
            f"{bare['p50_ms']!s:>8} {bare['p99_ms']!s:>8} | {ratio:>5.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with ``--bare-server``, be the bare server)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=",".join(str(x) for x in LEVELS))
    parser.add_argument("--duration", type=float, default=DURATION_S)
    parser.add_argument("--workers", type=int, default=0, help="imagerouter's job workers.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server is not None:
        serve_bare(args.bare_server)
        return
    levels = [float(x) for x in args.levels.split(",")]
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        ours, ours_url, token = _start_imagerouter(Path(tmp), args.workers)
        bare, bare_url = _start_bare()
        try:
            targets = {
                "imagerouter": (ours_url, {"Authorization": f"Bearer {token}"}),
                "bare": (bare_url, {}),
            }
            print(f"open-loop submit benchmark, {args.duration:.0f} s per level", flush=True)
            results = asyncio.run(_run(targets, levels, args.duration))
        finally:
            for proc in (ours, bare):
                proc.terminate()
                proc.wait(timeout=30)
    print()
    print(_table(results))
    best_ours = max(r["accepted_per_s"] for r in results["imagerouter"])
    best_bare = max(r["accepted_per_s"] for r in results["bare"])
    at_1000 = next((r for r in results["imagerouter"] if r["offered_per_s"] == 1000), None)
    summary = {
        "max_accepted_per_s": {"imagerouter": best_ours, "bare": best_bare},
        "throughput_ratio": round(best_ours / best_bare, 3) if best_bare else None,
        "p99_ms_at_1000_per_s": at_1000["p99_ms"] if at_1000 else None,
        "targets": {"throughput_ratio_min": 1 / 3, "p99_ms_at_1000_per_s_max": 25},
    }
    print(f"\nsummary: {json.dumps(summary)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "submit",
                "duration_s_per_level": args.duration,
                "workers": args.workers,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "levels": results,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
