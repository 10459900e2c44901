"""Benchmark of the end-to-end job path: submit → farm call → stored result → webhook.

Run: ``python -m loadtests.bench.bench_end_to_end`` (about 2 minutes; prints the figures and
writes ``loadtests/bench/results/end_to_end.json``; ``--profile`` adds a py-spy sample of the
server over the load and the drain, ``end-to-end.folded``).

* By default it adds one stage a run, so the figures say what each stage costs: the provider
  call alone (``--storage none --no-webhooks``), then with the signed webhook (``--storage
  none``), then with the image stored (the whole path, the headline figure). The whole path
  runs ``--repeat`` times (3), and its median run by done/s is the headline, every figure of
  it from that one run: a single run's done/s moved by up to a tenth between runs a minute
  apart on this shared machine. ``--storage`` or ``--webhooks`` given runs that one
  configuration once.

* Three processes besides the client, on loopback: the mock farm (``imagerouter farm``, every
  provider healthy, a few milliseconds per image, no faults), a webhook receiver (this module
  with ``--receiver``: it verifies every signature with the client SDK and counts deliveries
  per job), and ``imagerouter serve`` on SQLite with its workers, local output storage, every
  provider pointed at the farm and the account's webhook URL pointed at the receiver.
* One receiver takes every job's webhook, as if one customer had submitted all the load, so
  the server is configured as for such a customer: 128 webhook attempts in flight, at least
  16 requests at once to one receiver and up to 64 while it keeps up (``webhook_concurrency``,
  ``webhook_per_target``, ``webhook_per_target_max``; defaults 64, 4 and 64), and 128 job
  workers (``--workers``). With less in flight each turn of the server's loop, each SQLite
  transaction and each thread hand-over carries fewer jobs: with a fixed 4 a receiver and 64
  attempts the server spent about a fifth more CPU a job (0.854 against 0.696 ms with the
  limit adapting from 4, alternating runs on 2026-12-06).
* The farm answers tiny PNGs (``[images] png_bytes = "tiny"``, a few hundred bytes): the
  figures are about the job path; a realistic 1024x1024 PNG is about 1.5 MB, and its download
  and write would be the figure (15,000 of them are 22 GB of disk). With local storage, 500
  files written beside the server's data just before the load say what a file costs that
  filesystem at the time (``file_create_cpu_us``; see ``bench_file_create``). The runs' files
  are deleted together once the last run is over, so that no run follows another's deletes.
* The server is pinned to core 1; the compiled open-loop driver (``openloop.c``), the farm and
  the receiver share core 0. The driver offers ``--rate`` submits/s for ``--duration`` s:
  2,500 by default, above the 1,500 jobs/s the path is to carry and above the most the
  server carried on the fastest host seen (about 2,000 jobs/s at 0.5 ms of CPU a job), so
  that the figure is what the server carries rather than what was offered (jobs queue and
  the drain is timed too). At 2,000 offered, that host's runs were the offer's: 1,950 done/s.
* The clock runs from the first job's ``created_at`` (the store's own time) to the last
  job's ``finished_at`` or, with webhooks, the last delivery's arrival, whichever is later:
  the headline *done/s* is the jobs over that span. (Jobs final/s and webhooks delivered/s
  are printed too: with more workers than the webhooks keep up with, jobs finish ahead.)
  Per-job CPU is each process's ``utime + stime`` over the run divided by the jobs: the
  server's, the farm's, the receiver's and the driver's. From those, the *ceilings*: the
  jobs/s each core could carry at that cost (the server's core; the other, shared by the
  farm, the receiver and the driver). Done/s is bounded by the lower of the two. The
  server's context switches a job (over all its threads, voluntary and involuntary) say how
  often its threads handed the one core to each other.
* Exactness, read from the store and the receiver after every job is final and every webhook
  delivered: each accepted job completed once, the account's debits equal the sum of the
  jobs' prices with no refund, the balance moved by exactly that, and one webhook per job,
  every signature valid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imagerouter import eventloop
from imagerouter.server.settings import ServerSettings
from loadtests.bench.bench_file_create import one_round
from loadtests.bench.common import (
    RESULTS_DIR,
    context_switches,
    cpu_seconds,
    cpu_split,
    farm_server,
    farm_server_config,
    free_port,
    scratch_dir,
    start_py_spy,
    summarize_folded,
    wait_for_http,
    write_results,
)
from loadtests.bench.http_load import CLIENT_CPU, SERVER_CPU, Target, open_loop, pinned
from loadtests.processes import stop_process

BODY = json.dumps({"model": "gpt-image-2", "prompt": "a lighthouse at dusk, oil on canvas"})
GRANT = 10**12
SCENARIO = """description = "bench_end_to_end: fast, fault-free"
seed = 1
[providers.openai]
latency_ms = 1
generation_ms = 5
[providers.fal]
latency_ms = 1
generation_ms = 5
[providers.wavespeed]
latency_ms = 1
generation_ms = 5
[providers.replicate]
latency_ms = 1
generation_ms = 5
[images]
png_bytes = "tiny"
"""
TERMINAL = ("completed", "failed", "canceled")
#: The server's configuration for one receiver taking all the load (see the module doc): job
#: workers, and webhook attempts in flight, requests at once to one receiver (its floor) and
#: the most while it keeps up (the server's default ceiling). ``bench_instructions`` runs the
#: same.
WORKERS = 128
WEBHOOKS = (128, 16, ServerSettings.model_fields["webhook_per_target_max"].default)


# --- the webhook receiver (its own process) ----------------------------------------------------


def serve_receiver(port: int) -> None:
    """The receiver: :class:`loadtests.receiver.Receiver`'s app, plus ``POST /_secret`` (the
    account's signing secret) and ``GET /_summary`` (deliveries per job, signatures)."""
    from aiohttp import web

    from loadtests.receiver import Receiver

    receiver = Receiver()
    app = receiver.app()

    async def secret(request: web.Request) -> web.Response:
        receiver.secrets.append((await request.json())["secret"])
        return web.Response(status=204)

    async def summary(request: web.Request) -> web.Response:
        per_job = Counter(a.job_id for a in receiver.arrivals)
        return web.json_response(
            {
                "arrivals": len(receiver.arrivals),
                "jobs": len(per_job),
                "jobs_more_than_once": sum(1 for n in per_job.values() if n > 1),
                "without_job": per_job.get(None, 0),
                "signature_invalid": sum(1 for a in receiver.arrivals if not a.signature_valid),
                "types": Counter(a.type for a in receiver.arrivals),
                "first_at": min((a.arrived_at for a in receiver.arrivals), default=None),
                "last_at": max((a.arrived_at for a in receiver.arrivals), default=None),
            }
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app.router.add_post("/_secret", secret)
    app.router.add_get("/_summary", summary)
    app.router.add_get("/readyz", ready)
    loop = eventloop.new_event_loop()  # no slower than the server whose webhooks it takes
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


@contextlib.contextmanager
def receiver_process(tmp: Path) -> Iterator[tuple[str, int]]:
    """The receiver on core 0; yields its base URL and pid."""
    port = free_port()
    command = [sys.executable, "-m", "loadtests.bench.bench_end_to_end", "--receiver", str(port)]
    with (tmp / "receiver.log").open("wb") as err:
        proc = subprocess.Popen(pinned(command, CLIENT_CPU), stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", timeout_s=60)
        yield url, proc.pid
    finally:
        stop_process(proc, 30)


# --- the server --------------------------------------------------------------------------------


def write_config(
    path: Path,
    farm: dict[str, Any],
    storage: str,
    webhooks: tuple[int, int, int],
    settings: dict[str, Any] | None = None,
) -> Path:
    """The server's config: limits lifted, loopback webhooks allowed, providers at the farm,
    ``webhooks`` the webhook attempts in flight and the requests at once to one receiver (its
    floor and its ceiling), and any other ``[server]`` ``settings``."""
    concurrency, per_target, per_target_max = webhooks
    server = {
        "log_level": "WARNING",
        "auth_cache_s": 60,
        "webhook_allow": ["127.0.0.1/32"],
        "webhook_concurrency": concurrency,
        "webhook_per_target": per_target,
        "webhook_per_target_max": per_target_max,
        **(settings or {}),
    }
    return farm_server_config(path, farm, server, storage)


def api_request(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    """One JSON request with ``token`` as its bearer key; the answer's JSON (None if empty)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@contextlib.contextmanager
def server_process(
    tmp: Path,
    farm: dict[str, Any],
    workers: int,
    storage: str,
    webhooks: tuple[int, int, int],
    *,
    wrapper: Sequence[str] = (),
    ready_s: float = 60,
    settings: dict[str, Any] | None = None,
) -> Iterator[tuple[str, str, int, Path]]:
    """``imagerouter serve`` on SQLite, pinned to core 1; yields its base URL, an API key of an
    account holding ``GRANT`` credits, its pid and its database file. ``wrapper`` runs the
    server under another program (which must keep its pid: ``valgrind`` does), ``ready_s`` is
    how long it may take to start, and ``settings`` are more ``[server]`` settings."""
    home = tmp / "server"
    home.mkdir()
    config = write_config(home / "bench.toml", farm, storage, webhooks, settings)
    cli = [sys.executable, "-m", "imagerouter"]
    where = ["--config", str(config), "--data-dir", str(home / "data")]
    created = subprocess.run(
        [*cli, "keys", "create", "--account", "bench", "--credits", str(GRANT), *where],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    command = [*wrapper, *cli, "serve", *where, "--port", str(port), "--workers", str(workers)]
    with (home / "server.log").open("wb") as err:
        proc = subprocess.Popen(pinned(command, SERVER_CPU), stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", timeout_s=ready_s)
        yield url, token, proc.pid, home / "data" / "imagerouter.db"
    finally:
        stop_process(proc, 30)


# --- the store's view --------------------------------------------------------------------------


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def unfinished(db: Path) -> int:
    """Jobs not yet final."""
    with contextlib.closing(_db(db)) as conn:
        marks = ",".join("?" * len(TERMINAL))
        query = f"SELECT count(*) FROM jobs WHERE status NOT IN ({marks})"
        return conn.execute(query, TERMINAL).fetchone()[0]


def undelivered(db: Path) -> int:
    """Webhook deliveries not yet succeeded (pending, in flight, or given up)."""
    with contextlib.closing(_db(db)) as conn:
        query = "SELECT count(*) FROM deliveries WHERE status != 'succeeded'"
        return conn.execute(query).fetchone()[0]


def exactness(
    db: Path, accepted: int, hooks: dict[str, Any], storage: str = "local", webhooks: bool = True
) -> dict[str, Any]:
    """Every job completed once, charged its price once and never refunded; the balance moved
    by the sum of the prices; one webhook per job with a valid signature."""
    with contextlib.closing(_db(db)) as conn:
        one = lambda sql: conn.execute(sql).fetchone()  # noqa: E731
        statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
        jobs, prices, refunded = one("SELECT count(*), sum(price), sum(refunded) FROM jobs")
        debits, debited = one(
            "SELECT count(*), coalesce(-sum(amount), 0) FROM ledger WHERE kind = 'debit'"
        )
        debits_per_job_max = one(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger "
            "WHERE kind = 'debit' GROUP BY job_id)"
        )[0]
        refunds = one("SELECT count(*) FROM ledger WHERE kind = 'refund'")[0]
        progress_events = one("SELECT count(*) FROM events WHERE type = 'job.progress'")[0]
        balance = one("SELECT balance FROM accounts WHERE name = 'bench'")[0]
        completed_events = dict(
            conn.execute(
                "SELECT n, count(*) FROM (SELECT count(*) AS n FROM events "
                "WHERE type = 'job.completed' GROUP BY job_id) GROUP BY n"
            )
        )
        deliveries = dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
        stored = one(
            "SELECT count(*) FROM jobs WHERE status = 'completed' "
            "AND json_extract(result, '$.storage.backend') = 'local'"
        )[0]
    completed = statuses.get("completed", 0)
    expected_hooks = completed if webhooks else 0
    checks = {
        "every_accepted_job_completed": jobs == accepted == completed,
        "each_completed_once": completed_events == {1: completed},
        "one_debit_per_job": debits == jobs and debits_per_job_max == 1,
        "debits_equal_prices": abs(debited) == (prices or 0),
        "no_refund": refunds == 0 and not refunded,
        "balance_moved_by_prices": balance == GRANT - (prices or 0),
        "results_stored": stored == completed or storage == "none",
        "one_webhook_per_job": hooks["jobs"] == expected_hooks
        and hooks["arrivals"] == expected_hooks
        and hooks["jobs_more_than_once"] == 0,
        "signatures_valid": hooks["signature_invalid"] == 0,
        "deliveries_succeeded": deliveries == ({"succeeded": completed} if webhooks else {}),
    }
    return {
        "exact": all(checks.values()),
        "checks": checks,
        "statuses": statuses,
        "price_sum": prices,
        "debited": abs(debited),
        "refunds": refunds,
        "deliveries": deliveries,
        "progress_events": progress_events,
        "webhooks": hooks,
    }


def span(db: Path) -> tuple[float, float]:
    """The first job's ``created_at`` and the last one's ``finished_at`` (unix s)."""
    with contextlib.closing(_db(db)) as conn:
        return conn.execute("SELECT min(created_at), max(finished_at) FROM jobs").fetchone()


# --- the run -----------------------------------------------------------------------------------


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (the driver, once it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ceilings(result: dict[str, Any]) -> dict[str, float | None]:
    """The most jobs/s each core could carry at the run's CPU a job: the server's core, and
    the other one, which the farm, the receiver and the driver share. The run's completed/s
    is bounded by the lower; a figure past it needs that core's share of a job cut."""
    client = sum(result[f"{name}_cpu_ms_per_job"] for name in ("farm", "receiver", "driver"))
    server = result["server_cpu_ms_per_job"]
    return {
        "server_core": round(1000 / server) if server > 0 else None,
        "client_core": round(1000 / client) if client > 0 else None,
    }


def wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll ``condition`` every 0.1 s until it holds or ``deadline`` (monotonic) passes."""
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One bounded run; the figures and the checks."""
    scenario = tmp / "scenario.toml"
    scenario.write_text(SCENARIO)
    webhooks = (args.webhook_concurrency, args.per_target, args.per_target_max)
    with (
        farm_server(str(scenario), cpu=CLIENT_CPU) as (farm, farm_pid),
        receiver_process(tmp) as (hooks_url, hooks_pid),
        server_process(tmp, farm, args.workers, args.storage, webhooks) as (url, token, pid, db),
    ):
        if args.webhooks:
            hook = {"url": f"{hooks_url}/hooks/bench"}
            answer = api_request("PUT", f"{url}/v1/webhook", token, hook)
            api_request("POST", f"{hooks_url}/_secret", token, {"secret": answer["secret"]})
        target = Target(
            f"{url}/v1/jobs",
            body=BODY.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        # warm-up: imports, connections, SQLite pages; its jobs finish before the clock starts
        open_loop(target, rate=200, duration_s=1, drain_s=2)
        deadline = time.monotonic() + 30
        wait_until(lambda: unfinished(db) == 0 and undelivered(db) == 0, deadline)
        warm = json.load(urllib.request.urlopen(f"{hooks_url}/_summary", timeout=10))
        with contextlib.closing(_db(db)) as conn:
            warm_jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        # what a file costs this filesystem right now (see bench_file_create): the stored-image
        # stage's system CPU follows it; its files stay until the run's directory is removed
        probe = one_round(str(tmp), 500, 500) if args.storage == "local" else None
        spy = None
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            # the whole run, load and drain: stopped (SIGINT) once every webhook is delivered
            spy = start_py_spy(
                pid,
                args.duration + args.max_s + 30,
                RESULTS_DIR / "end-to-end.folded",
                gil=args.profile_gil,
            )
        cpu_before = cpu_seconds(pid), cpu_seconds(farm_pid), cpu_seconds(hooks_pid)
        split_before = cpu_split(pid), cpu_split(pid, pid)
        switches_before = context_switches(pid)
        wall_before = time.time()
        driver_before = _children_cpu()
        load = open_loop(target, rate=args.rate, duration_s=args.duration, drain_s=5)
        driver_cpu = _children_cpu() - driver_before
        deadline = time.monotonic() + args.max_s
        done = wait_until(lambda: unfinished(db) == 0, deadline)
        delivered = wait_until(lambda: undelivered(db) == 0, deadline)
        cpu_after = cpu_seconds(pid), cpu_seconds(farm_pid), cpu_seconds(hooks_pid)
        split_after = cpu_split(pid), cpu_split(pid, pid)
        switches_after = context_switches(pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        hooks = json.load(urllib.request.urlopen(f"{hooks_url}/_summary", timeout=10))
        first, last = span(db)
        accepted = load["statuses"].get("202", 0) + warm_jobs
        checked = exactness(db, accepted, hooks, args.storage, args.webhooks)
    jobs = accepted - warm_jobs
    # the clock: the first measured submit (after the warm-up) to the last completion
    first = max(first, wall_before)
    elapsed = last - first
    per_job = 1000 / max(1, jobs)
    result = {
        "jobs": jobs,
        "warm_up_jobs": warm_jobs,
        "warm_up_webhooks": warm["arrivals"],
        "offered_per_s": args.rate,
        "duration_s": args.duration,
        "submit": {k: load[k] for k in ("ok_per_s", "p50_ms", "p99_ms", "statuses") if k in load},
        "all_final": done,
        "all_delivered": delivered,
        "elapsed_s": round(elapsed, 3),
        "completed_per_s": round(jobs / elapsed, 1) if elapsed > 0 else None,
        "webhooks_done_per_s": round(jobs / (hooks["last_at"] - first), 1)
        if hooks["last_at"]
        else None,
        # the headline: until the last job is final and, with webhooks, the last one delivered
        # (with more workers than the webhooks keep up with, jobs finish ahead of their hooks)
        "done_per_s": round(jobs / (max(last, hooks["last_at"] or last) - first), 1)
        if elapsed > 0
        else None,
        "server_cpu_ms_per_job": round((cpu_after[0] - cpu_before[0]) * per_job, 3),
        "farm_cpu_ms_per_job": round((cpu_after[1] - cpu_before[1]) * per_job, 3),
        "receiver_cpu_ms_per_job": round((cpu_after[2] - cpu_before[2]) * per_job, 3),
        "driver_cpu_ms_per_job": round(driver_cpu * per_job, 3),
        "server_cpu_ms_per_job_split": {
            "user": round((split_after[0][0] - split_before[0][0]) * per_job, 3),
            "system": round((split_after[0][1] - split_before[0][1]) * per_job, 3),
            "main_thread": round((sum(split_after[1]) - sum(split_before[1])) * per_job, 3),
        },
        # the threads' hand-overs on the server's one core (see eventloop.helper_thread)
        "server_context_switches_per_job": {
            kind: round((after - before) / max(1, jobs), 2)
            for kind, before, after in zip(
                ("voluntary", "involuntary"), switches_before, switches_after, strict=True
            )
        },
        **checked,
    }
    if probe is not None:
        result["file_create_cpu_us"] = round(probe["user_us"] + probe["system_us"], 1)
    result["ceilings_per_s"] = ceilings(result)
    if args.profile:
        result["profile"] = summarize_folded(RESULTS_DIR / "end-to-end.folded")
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose done/s is the median of ``runs`` (the lower middle one of an even
    number): one run's figures, all of them from the same run."""
    ordered = sorted(runs, key=lambda r: r["done_per_s"])
    return ordered[(len(ordered) - 1) // 2]


#: The stage runs: a name, output storage, webhooks on.
STAGES = (
    ("provider call", "none", False),
    ("+ signed webhook", "none", True),
    ("+ stored image", "local", True),
)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one run's figures."""
    print(
        f"end to end: {result['jobs']} jobs, {result['done_per_s']} done/s (offered "
        f"{args.rate:g}/s for {args.duration:g} s; jobs final at {result['completed_per_s']}/s, "
        f"webhooks delivered at {result['webhooks_done_per_s']}/s); CPU per job: server "
        f"{result['server_cpu_ms_per_job']} ms, farm {result['farm_cpu_ms_per_job']} ms, "
        f"webhook receiver {result['receiver_cpu_ms_per_job']} ms, "
        f"driver {result['driver_cpu_ms_per_job']} ms"
    )
    ceiling = result["ceilings_per_s"]
    print(
        f"CPU ceilings at these costs: the server's core {ceiling['server_core']} jobs/s, "
        f"the other core (farm, receiver, driver) {ceiling['client_core']} jobs/s"
    )
    print(f"server CPU ms per job: {result['server_cpu_ms_per_job_split']}")
    print(f"server context switches per job: {result['server_context_switches_per_job']}")
    if "file_create_cpu_us" in result:
        print(
            f"one file written beside the server's data just before: "
            f"{result['file_create_cpu_us']} µs of CPU"
        )
    print(f"submits: {result['submit']}")
    print(f"job.progress events: {result['progress_events']} (warm-up included)")
    print(f"exact: {result['exact']} {json.dumps(result['checks'])}", flush=True)


def _kept(name: str, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """A stage's figures: its one run, or the median of its runs by done/s, with them all."""
    result = median_run(repeats)
    if len(repeats) > 1:
        figures = ", ".join(f"{r['done_per_s']:g}" for r in repeats)
        print(f"{name}: {len(repeats)} runs, {figures} done/s; the median run is kept")
        result["runs"] = [
            {k: r[k] for k in ("done_per_s", "server_cpu_ms_per_job", "exact")} for r in repeats
        ]
        result["exact"] = all(r["exact"] for r in repeats)
    return result


def run_stages(args: argparse.Namespace) -> dict[str, Any]:
    """The three stage runs (see the module doc); the last, the whole path, is the headline:
    run ``args.repeat`` times, its median run by done/s."""
    runs: list[dict[str, Any]] = []
    # Every run's files are kept until the last run is over: after thousands of files are
    # deleted, creating one costs this disk up to thirty times as much for a while (see
    # scratch_dir), and the whole path's third run in the make bench of 22:21 on 2026-12-06
    # measured 804 µs a file just before its load (22 and 27 before the two runs ahead of
    # it) and carried 1,188 jobs/s (against 1,614 and 1,610).
    with tempfile.TemporaryDirectory(prefix="bench-e2e-", dir=scratch_dir()) as root:
        for number, (name, storage, webhooks) in enumerate(STAGES, 1):
            stage = argparse.Namespace(**{**vars(args), "storage": storage, "webhooks": webhooks})
            repeats: list[dict[str, Any]] = []
            for _ in range(max(1, args.repeat) if number == len(STAGES) else 1):
                print(f"--- {name} (storage {storage}, webhooks {'on' if webhooks else 'off'})")
                tmp = Path(root) / f"run{len(runs) + len(repeats) + 1}"
                tmp.mkdir()
                result = {"stage": name, "storage": storage, "webhooks": webhooks}
                result |= run(stage, tmp)
                report(result, stage)
                repeats.append(result)
            runs.append(_kept(name, repeats))
    print(
        "\nstage                   done/s   server CPU/job   added by the stage"
        "   ceilings: server core / other core"
    )
    before = 0.0
    for result in runs:
        cpu = result["server_cpu_ms_per_job"]
        ceiling = result["ceilings_per_s"]
        print(
            f"{result['stage']:<18} {result['done_per_s']:>11}   {cpu:>11.3f} ms"
            f"   {cpu - before:>+8.3f} ms   {ceiling['server_core']:>13} / "
            f"{ceiling['client_core']}"
        )
        before = cpu
    return {**runs[-1], "stages": runs, "exact": all(r["exact"] for r in runs)}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with ``--receiver``, be the webhook receiver)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2500, help="Submits/s offered.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of load.")
    parser.add_argument("--workers", type=int, default=WORKERS, help="The server's job workers.")
    defaults = ServerSettings.model_fields
    parser.add_argument(
        "--webhook-concurrency",
        type=int,
        default=WEBHOOKS[0],
        help="The server's webhook attempts in flight "
        f"(its default: {defaults['webhook_concurrency'].default}).",
    )
    parser.add_argument(
        "--per-target",
        type=int,
        default=WEBHOOKS[1],
        help="The server's requests at once to one webhook receiver, always allowed "
        f"(its default: {defaults['webhook_per_target'].default}).",
    )
    parser.add_argument(
        "--per-target-max",
        type=int,
        default=WEBHOOKS[2],
        help="The most requests at once to one webhook receiver that keeps up (the default "
        "is the server's).",
    )
    parser.add_argument(
        "--storage",
        default=None,
        choices=("local", "none"),
        help="Output storage (given: one run of this configuration; webhooks on by default).",
    )
    parser.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Register the receiver as the account's webhook (off: the stage's cost; given: "
        "one run, local storage by default).",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs of the whole path in the three-stage run; the median one is the headline.",
    )
    parser.add_argument("--max-s", type=float, default=90.0, help="Longest wait to drain.")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="py-spy the server during the load.",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="Sample only the thread holding the GIL (the Python CPU), not every thread.",
    )
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver is not None:
        serve_receiver(args.receiver)
        return
    result = {
        "benchmark": "end_to_end",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "method": "server on core 1; openloop, farm and receiver on core 0; SQLite",
        "server_config": {
            "workers": args.workers,
            "webhook_concurrency": args.webhook_concurrency,
            "webhook_per_target": args.per_target,
            "webhook_per_target_max": args.per_target_max,
        },
    }
    if args.storage is None and args.webhooks is None and not args.profile:
        result |= run_stages(args)
    else:
        args.storage = args.storage or "local"
        args.webhooks = True if args.webhooks is None else args.webhooks
        with tempfile.TemporaryDirectory(prefix="bench-e2e-", dir=scratch_dir()) as tmp:
            result |= run(args, Path(tmp))
        report(result, args)
    if "profile" in result:
        print("\nprofile (server), inclusive % of samples:")
        for name, pct in list(result["profile"]["inclusive_pct"].items())[:30]:
            print(f"  {pct:>5.1f}  {name}")
        print("self %:")
        for name, pct in list(result["profile"]["self_pct"].items())[:15]:
            print(f"  {pct:>5.1f}  {name}")
    print(f"wrote {write_results('end_to_end', result)}")


if __name__ == "__main__":
    main()
