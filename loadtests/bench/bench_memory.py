"""Memory of the server with 10,000 jobs in flight: RSS before and after, read from /proc.

Run: ``python -m loadtests.bench.bench_memory`` (about a minute; prints a table and writes
``loadtests/bench/results/memory.json``).

* The mock farm runs in **its own process** (so its memory is not counted), with an OpenAI
  endpoint whose images take ten minutes: a job that reaches it stays in flight, holding one
  connection, for the whole measurement. The server (``imagerouter serve``, its own process,
  pointed at that farm by its config) serves one model, ``bench-held``, by OpenAI alone.
* Three configurations, one after the other in the same run, each a fresh server and
  database: ``queued`` (``--workers 0``: all 10,000 jobs wait in the queue), ``mixed`` (2,000
  workers: 2,000 jobs held at the farm, 8,000 queued) and ``running`` (10,000 workers: every
  job held at the farm, one open connection each).
* For each: warm up (a few submits and reads), read ``VmRSS`` of the server's pid from
  ``/proc/PID/status`` (**before**), submit 10,000 jobs open-loop at 1,000 a second, wait until
  the database shows the expected jobs running (bounded), read ``VmRSS`` again (**after**, the
  highest of three reads half a second apart) and ``VmHWM`` (the peak). Reported: both, the
  growth, and the growth per job in flight; from ``queued`` and ``running`` together, the
  memory of one queued and of one running job.
* A fourth case, ``hanging_webhooks``: 1,000 jobs that end at once (a fast farm of their
  own), each with its ``webhook_url`` on one of 1,000 loopback receivers that accept the
  connection and never answer. Measured while their attempts hang (the default 15 s
  timeout): RSS before and after, the peak, the server's open file descriptors and the
  connections the receivers held at most (bounded by ``webhook_concurrency`` +
  ``webhook_slow_max``).
* Video (first; alone with ``--video-only``): a Veo-shaped model on the farm's fal, the farm in
  its own process. ``idle``: 10 video jobs held at the provider (tiny outputs, ten-minute
  generations); ``storing``: 10 jobs whose 50 MiB MP4s the farm serves at 4 MiB/s, so every job
  is streaming its output to disk while ``VmRSS`` is read every 0.2 s over a window (the
  highest read counts). Reported: KiB per storing job above an idle one (the budget: under
  1 MiB), and how many jobs were still storing at the end of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from loadtests.bench.common import farm_process, free_port, wait_for_http, write_results
from loadtests.processes import stop_process

JOBS = 10_000
HANGING = 1_000
FAST_SCENARIO = """description = "bench_memory: OpenAI answers at once"
seed = 1
[providers.openai]
latency_ms = 1
generation_ms = 5
"""
RATE_PER_S = 1_000.0
RUNNING = 2_000
MODEL = "bench-held"
BODY = {"model": MODEL, "prompt": "held in flight", "size": "1024x1024"}
FARM_SCENARIO = """description = "bench_memory: OpenAI images take ten minutes"
seed = 1
[providers.openai]
latency_ms = 1
generation_ms = 600000
"""
CATALOG = f"""[models."{MODEL}"]
description = "bench_memory: OpenAI alone"
credits = {{ low = 1, standard = 1, high = 1 }}
[[models."{MODEL}".providers]]
provider = "openai"
model = "gpt-image-2"
"""


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` (``VmRSS``, ``VmHWM``) of ``pid`` from ``/proc/PID/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _config(tmp: Path, openai_url: str, workers: int) -> Path:
    (tmp / "catalog.toml").write_text(CATALOG)
    config = tmp / "imagerouter.toml"
    config.write_text(
        'catalog = "catalog.toml"\n'
        f"[server]\nworkers = {workers}\nauth_cache_s = 600\nshutdown_grace_s = 1\n"
        "lease_s = 120\nsweep_interval_s = 30\n"
        "[server.rate_limits.generate]\nrate_per_s = 1000000\nburst = 1000000\n"
        "[server.rate_limits.read]\nrate_per_s = 1000000\nburst = 1000000\n"
        "[http]\nmax_connections = 4000\n"
        "[router]\ndeadline_s = 1800\nattempt_timeout_s = 1200\nmax_attempts = 1\n"
        f'[providers.openai]\nbase_url = "{openai_url}"\napi_key = "farm-key-openai"\n'
        "[providers.fal]\nenabled = false\n[providers.wavespeed]\nenabled = false\n"
        "[providers.replicate]\nenabled = false\n"
    )
    return config


def _cli(*args: str, config: Path, data: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagerouter",
            *args,
            "--config",
            str(config),
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"imagerouter {' '.join(args)}: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def _server(tmp: Path, config: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """``imagerouter serve`` with ``config`` and its data under ``tmp``, answering ``/readyz``,
    with a funded API key; yields its URL, the key and the process, stopped on exit."""
    data = tmp / "data"
    created = _cli(
        "keys", "create", "--account", "bench", "--credits", str(10**9), config=config, data=data
    )
    token = created.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "imagerouter", "serve", "--config", str(config)]
    command += ["--data-dir", str(data), "--port", str(port)]
    with (tmp / "server.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"{url}/readyz", timeout_s=60)
        yield url, token, server
    finally:
        stop_process(server, 30)


async def _open_loop(
    url: str, token: str, total: int, rate: float, body: dict[str, Any] | None = None
) -> dict[str, int]:
    """Submit ``total`` jobs at ``rate`` a second whatever the answers (open loop)."""
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payload = json.dumps(body or BODY).encode()
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def fire() -> None:
            try:
                async with session.post(f"{url}/v1/jobs", data=payload, headers=headers) as r:
                    await r.read()
                    key = str(r.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for number in range(total):
            delay = start + number / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire()))
        await asyncio.gather(*tasks)
    return statuses


def _statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))


def measure(openai_url: str, workers: int, jobs: int, rate: float) -> dict[str, Any]:
    """One configuration: a fresh server with ``workers``; RSS before and after ``jobs``."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as name:
        tmp = Path(name)
        config, data = _config(tmp, openai_url, workers), tmp / "data"
        with _server(tmp, config) as (url, token, server):
            warm = min(50, workers) if workers else 50
            asyncio.run(_open_loop(url, token, warm, 100.0))
            time.sleep(1.0)
            before = rss_kib(server.pid)
            started = time.monotonic()
            sent = asyncio.run(_open_loop(url, token, jobs, rate))
            submit_s = time.monotonic() - started
            target = min(workers, jobs + warm)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                counts = _statuses(data / "imagerouter.db")
                if counts.get("processing", 0) >= target:
                    break
                time.sleep(0.5)
            time.sleep(2.0)
            reads = []
            for _ in range(3):
                time.sleep(0.5)
                reads.append(rss_kib(server.pid))
            after = max(reads)
            peak = rss_kib(server.pid, "VmHWM")
            counts = _statuses(data / "imagerouter.db")
    in_flight = counts.get("queued", 0) + counts.get("processing", 0)
    return {
        "workers": workers,
        "submitted": dict(sent),
        "submit_s": round(submit_s, 2),
        "jobs": counts,
        "in_flight": in_flight,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "growth_mib": round((after - before) / 1024, 1),
        "kib_per_job_in_flight": round((after - before) / max(1, in_flight), 2),
        "after_over_before": round(after / before, 2),
    }


class _Hanging:
    """``count`` loopback listeners, on a thread of their own, that accept connections and
    never answer; they count the connections held now and at most."""

    def __init__(self, count: int) -> None:
        self.count, self.urls, self.open, self.peak = count, [], 0, 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _start(self) -> list[asyncio.Server]:
        servers = [
            await asyncio.start_server(self._hold, "127.0.0.1", 0) for _ in range(self.count)
        ]
        self.urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/hook" for s in servers]
        return servers

    def __enter__(self) -> _Hanging:
        self._thread.start()
        self._servers = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            self._loop.call_soon_threadsafe(server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure_hanging_webhooks(openai_url: str, hanging: int) -> dict[str, Any]:
    """The ``hanging_webhooks`` case (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as name, _Hanging(hanging) as hang:
        tmp = Path(name)
        config = _config(tmp, openai_url, 32)
        # the receivers are on loopback
        allow = '[server]\nwebhook_allow = ["127.0.0.1/32"]\n'
        config.write_text(config.read_text().replace("[server]\n", allow, 1))
        with _server(tmp, config) as (url, token, server):

            async def register() -> None:
                headers = {"Authorization": f"Bearer {token}"}
                async with (
                    aiohttp.ClientSession() as session,
                    session.put(
                        f"{url}/v1/webhook", json={"url": hang.urls[0]}, headers=headers
                    ) as answer,
                ):
                    if answer.status != 200:
                        raise RuntimeError(
                            f"PUT /v1/webhook: {answer.status} {await answer.text()}"
                        )

            asyncio.run(_open_loop(url, token, 50, 100.0))  # warm up, no webhook yet
            asyncio.run(register())
            time.sleep(2.0)
            before, fds_before = rss_kib(server.pid), _fds(server.pid)
            sent = asyncio.run(_submit_with_hooks(url, token, hang.urls))
            fds, reads = [], []
            deadline = time.monotonic() + 12  # inside the 15 s timeout: every attempt hangs
            while time.monotonic() < deadline:
                fds.append(_fds(server.pid))
                reads.append(rss_kib(server.pid))
                time.sleep(0.5)
            peak = rss_kib(server.pid, "VmHWM")
    return {
        "receivers": hanging,
        "submitted": sent,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(max(reads) / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "growth_mib": round((max(reads) - before) / 1024, 1),
        "fds_before": fds_before,
        "fds_peak": max(fds),
        "receiver_connections_peak": hang.peak,
    }


async def _submit_with_hooks(url: str, token: str, hooks: list[str]) -> dict[str, int]:
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(hook: str) -> None:
            body = {**BODY, "webhook_url": hook}
            async with session.post(f"{url}/v1/jobs", json=body, headers=headers) as answer:
                await answer.read()
                statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1

        await asyncio.gather(*(one(hook) for hook in hooks))
    return statuses


# --- video: memory of a job storing a 50 MB output ---------------------------------------------

VIDEO_MODEL = "bench-video"
VIDEO_BODY = {"model": VIDEO_MODEL, "prompt": "a heron takes off from a misty lake"}
VIDEO_MIB = 50
VIDEO_JOBS = 10
#: How fast the farm serves each video: slow enough that every job is still storing while RSS
#: is sampled (50 MiB at 4 MiB/s is about 12 s a download).
VIDEO_SERVE_MIB_S = 4.0
VIDEO_CATALOG = f"""[models."{VIDEO_MODEL}"]
kind = "video"
description = "bench_memory: a Veo-shaped model on fal alone"
video_credits = {{ per_second = {{ "720p" = 1 }} }}
video = {{ durations = [8], resolutions = ["720p"], aspect_ratios = ["16:9"] }}
[[models."{VIDEO_MODEL}".providers]]
provider = "fal"
model = "fal-ai/veo3/fast"
"""


def _video_scenario(storing: bool, mib: int, serve_mib_s: float) -> str:
    """``storing``: videos of ``mib`` MiB, generated at once, served at ``serve_mib_s``;
    otherwise (idle) tiny videos whose generation takes ten minutes."""
    generation = 1 if storing else 600_000
    per_second = mib * 1024 * 1024 // 8 if storing else 0
    return (
        f'description = "bench_memory video ({"storing" if storing else "idle"})"\nseed = 1\n'
        f"[providers.fal]\nlatency_ms = 1\ngeneration_ms = {generation}\n"
        f"[videos]\nbytes_per_second = {per_second}\n"
        f"serve_bytes_per_s = {int(serve_mib_s * 1024 * 1024)}\n"
    )


def _video_config(tmp: Path, fal_url: str, workers: int) -> Path:
    (tmp / "catalog.toml").write_text(VIDEO_CATALOG)
    config = tmp / "imagerouter.toml"
    config.write_text(
        'catalog = "catalog.toml"\n'
        f"[server]\nworkers = {workers}\nauth_cache_s = 600\nshutdown_grace_s = 1\n"
        "lease_s = 120\nsweep_interval_s = 30\n"
        "[server.storage]\nvideo_download_timeout_s = 1200\n"
        "[router]\nvideo_deadline_s = 1800\nvideo_attempt_timeout_s = 1200\nmax_attempts = 1\n"
        f'[providers.fal]\nbase_url = "{fal_url}"\napi_key = "farm-key-fal"\n'
        "[providers.openai]\nenabled = false\n[providers.wavespeed]\nenabled = false\n"
    )
    return config


def measure_video(fal_url: str, jobs: int, window_s: float) -> dict[str, Any]:
    """A fresh server with one worker a job: RSS before, then the highest of reads every
    0.2 s over ``window_s`` after ``jobs`` video jobs were submitted, and how many were still
    in flight (processing) at the end of the window."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-video-") as name:
        tmp = Path(name)
        config, data = _video_config(tmp, fal_url, jobs), tmp / "data"
        with _server(tmp, config) as (url, token, server):
            time.sleep(1.0)
            before = rss_kib(server.pid)
            asyncio.run(_open_loop(url, token, jobs, 100.0, VIDEO_BODY))
            time.sleep(1.0)
            reads = []
            deadline = time.monotonic() + window_s
            while time.monotonic() < deadline:
                reads.append(rss_kib(server.pid))
                time.sleep(0.2)
            counts = _statuses(data / "imagerouter.db")
            stored = sum(f.stat().st_size for f in (data / "media").rglob("*") if f.is_file())
    after = max(reads)
    return {
        "jobs": counts,
        "processing_at_end": counts.get("processing", 0),
        "bytes_on_disk_at_end": stored,
        "rss_before_mib": round(before / 1024, 1),
        "rss_during_mib": round(after / 1024, 1),
        "kib_per_job": round((after - before) / max(1, jobs), 1),
    }


def run_video(jobs: int, mib: int, serve_mib_s: float) -> dict[str, Any]:
    """The video case: ``jobs`` idle video jobs (held at the provider), then ``jobs`` storing
    a ``mib`` MiB output each; RSS per storing job above an idle one."""
    results = {}
    window_s = min(8.0, mib / serve_mib_s * 0.6)
    with tempfile.TemporaryDirectory(prefix="bench-memory-farm-") as name:
        for label, storing in (("idle", False), ("storing", True)):
            scenario = Path(name) / f"{label}.toml"
            scenario.write_text(_video_scenario(storing, mib, serve_mib_s))
            with farm_process(str(scenario)) as farm:
                fal_url = farm["providers"]["fal"]["base_url"]
                print(f"  video {label}: {jobs} jobs …", flush=True)
                results[label] = measure_video(fal_url, jobs, window_s)
    above = results["storing"]["kib_per_job"] - results["idle"]["kib_per_job"]
    summary = {
        "output_mib": mib,
        "kib_per_storing_job_above_idle": round(above, 1),
        "under_1_mib": above < 1024,
        "all_storing_during_window": results["storing"]["processing_at_end"] == jobs,
    }
    print(
        f"\nvideo: {jobs} jobs storing {mib} MiB each: "
        f"{results['storing']['kib_per_job']} KiB per job, an idle video job "
        f"{results['idle']['kib_per_job']} KiB: {summary['kib_per_storing_job_above_idle']} KiB "
        f"above idle (under 1 MiB: {summary['under_1_mib']}; still storing at the end of the "
        f"window: {results['storing']['processing_at_end']} of {jobs}, "
        f"{results['storing']['bytes_on_disk_at_end'] / 2**20:.0f} MiB on disk)"
    )
    return {"configs": results, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    """Run both configurations, print a table, write ``results/memory.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--rate", type=float, default=RATE_PER_S)
    parser.add_argument("--running", type=int, default=RUNNING, help="workers of 'running'")
    parser.add_argument(
        "--hanging", type=int, default=HANGING, help="receivers of 'hanging_webhooks' (0: skip)"
    )
    parser.add_argument("--video-jobs", type=int, default=VIDEO_JOBS)
    parser.add_argument("--video-mib", type=int, default=VIDEO_MIB)
    parser.add_argument("--video-serve-mib-s", type=float, default=VIDEO_SERVE_MIB_S)
    parser.add_argument("--video-only", action="store_true", help="only the video case")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").is_file():
        raise SystemExit("bench_memory reads /proc: Linux only")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    video = run_video(args.video_jobs, args.video_mib, args.video_serve_mib_s)
    if args.video_only:
        path = write_results("memory-video", {"benchmark": "memory-video", **video})
        print(f"wrote {path}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-memory-farm-") as name:
        scenario = Path(name) / "held.toml"
        scenario.write_text(FARM_SCENARIO)
        with farm_process(str(scenario)) as farm:
            openai_url = farm["providers"]["openai"]["base_url"]
            results = {}
            configs = (("queued", 0), ("mixed", args.running), ("running", args.jobs))
            for label, workers in configs:
                print(f"  {label}: {args.jobs} jobs, {workers} workers …", flush=True)
                results[label] = measure(openai_url, workers, args.jobs, args.rate)
    hanging_row = None
    if args.hanging:
        with tempfile.TemporaryDirectory(prefix="bench-memory-farm-") as name:
            scenario = Path(name) / "fast.toml"
            scenario.write_text(FAST_SCENARIO)
            with farm_process(str(scenario)) as farm:
                print(f"  hanging_webhooks: {args.hanging} receivers that never answer …")
                hanging_row = measure_hanging_webhooks(
                    farm["providers"]["openai"]["base_url"], args.hanging
                )
    print()
    print(
        f"{'config':>8} | {'in flight':>9} | {'RSS before':>10} | {'RSS after':>9} | "
        f"{'peak':>7} | {'growth':>8} | {'KiB/job':>7} | after/before"
    )
    for label, row in results.items():
        print(
            f"{label:>8} | {row['in_flight']:>9} | {row['rss_before_mib']:>7} MiB | "
            f"{row['rss_after_mib']:>6} MiB | {row['rss_peak_mib']:>3} MiB | "
            f"{row['growth_mib']:>4} MiB | {row['kib_per_job_in_flight']:>7} | "
            f"{row['after_over_before']}"
        )
    queued, running = results["queued"], results["running"]
    summary = {
        "kib_per_queued_job": queued["kib_per_job_in_flight"],
        "kib_per_running_job": running["kib_per_job_in_flight"],
        "running_over_queued": round(
            running["kib_per_job_in_flight"] / max(0.01, queued["kib_per_job_in_flight"]), 1
        ),
        "rss_mib_with_all_running": running["rss_after_mib"],
    }
    if hanging_row is not None:
        print(
            f"\nhanging_webhooks: {hanging_row['receivers']} receivers, RSS "
            f"{hanging_row['rss_before_mib']} -> {hanging_row['rss_after_mib']} MiB (peak "
            f"{hanging_row['rss_peak_mib']}), fds {hanging_row['fds_before']} -> "
            f"{hanging_row['fds_peak']}, receiver connections at most "
            f"{hanging_row['receiver_connections_peak']}"
        )
    print(f"\nsummary: {json.dumps(summary)}")
    path = write_results(
        "memory",
        {
            "benchmark": "memory",
            "jobs": args.jobs,
            "rate_per_s": args.rate,
            "machine": {"cpus": os.cpu_count()},
            "configs": results,
            "hanging_webhooks": hanging_row,
            "summary": summary,
            "video": video,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
