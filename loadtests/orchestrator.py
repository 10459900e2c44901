"""The load-test orchestrator: farm + router + Locust for one scenario, then a report.

:func:`run_loadtest` (behind ``imagerouter loadtest SCENARIO``), all on 127.0.0.1:

1. writes the run's config (server and router settings of the scenario) and creates an API key
   with ``imagerouter keys create``;
2. starts its receiver (Locust's start/stop notices, webhooks) and ``imagerouter serve --farm``
   (the router with the mock farm in-process), and finds the farm through ``GET /v1/providers``;
3. resets the farm, plans the farm timeline (:mod:`loadtests.timeline`) and starts Locust
   headless (one process, or a master and ``workers`` worker processes) with the plan;
4. on Locust's start notice, switches farm phases at their moments through
   ``PUT /_farm/providers/{name}/faults`` while it samples the farm's counters and the
   router's breakers every half second and shows progress;
5. when Locust stops, waits (bounded) for the last jobs to end, reads the system's own record
   (:mod:`loadtests.collect`), stops everything it started, and writes the report
   (:mod:`loadtests.report`): Locust's HTML and CSVs, ``summary.json``, ``summary.md``, charts.

Every loop is bounded by the run's duration plus fixed margins; every process it starts is
stopped by pid in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from imagerouter.bundled import resolve_bundled
from imagerouter.config import deep_merge
from imagerouter.errors import ConfigError
from loadtests.bench.common import free_port
from loadtests.collect import ApiReader, FarmReader
from loadtests.plan import PLAN_ENV, LocustPlan
from loadtests.processes import stop_process
from loadtests.receiver import Receiver
from loadtests.scenario import LoadScenario
from loadtests.timeline import Switch, plan_switches
from mockproviders.scenario import FARM_SCENARIOS

__all__ = ["RunOptions", "RunResult", "run_loadtest"]

HERE = Path(__file__).parent
LOCUSTFILE = HERE / "locustfile.py"
#: The account every load-test job is charged to, and its starting credits.
ACCOUNT, CREDITS = "loadtest", 1_000_000_000
SAMPLE_EVERY_S = 0.5
#: Server settings for a load test (laid under the scenario's ``[server]``); fields this
#: server version does not know are left out.
SERVER_DEFAULTS: dict[str, Any] = {
    "workers": 256,
    "lease_s": 30.0,
    "poll_interval_s": 0.2,
    "shutdown_grace_s": 5.0,
    "auth_cache_s": 60.0,
    "rate_limits": {
        "generate": {"rate_per_s": 100_000, "burst": 100_000},
        "read": {"rate_per_s": 100_000, "burst": 100_000},
    },
    "log_level": "warning",
    "webhook_allow": ["127.0.0.1/32"],  # the receiver is on loopback
}


@dataclass
class RunOptions:
    """What ``imagerouter loadtest`` was asked for."""

    scenario: LoadScenario
    out: Path
    users: int | None = None
    duration_s: float | None = None
    workers: int = 0
    #: Longest wait for the last jobs after the traffic stops (default: deadline + 15 s).
    drain_s: float | None = None
    #: Keep the server's stored images (``data/media``) after the report; else they are deleted.
    keep_media: bool = False
    show: Callable[[str], None] = print
    #: Seconds between progress lines.
    progress_every_s: float = 5.0


@dataclass
class RunResult:
    """Where the report is and whether every check passed."""

    out: Path
    summary: dict[str, Any]
    ok: bool


# --- config and processes ----------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # numbers, and strings (JSON escapes are TOML basic strings)


def _toml_tables(path: str, table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if scalars or not tables:
        out.append(f"[{path}]")
        out.extend(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in scalars.items())
    for key, sub in tables.items():
        _toml_tables(f"{path}.{json.dumps(str(key))}", sub, out)


def server_settings(scenario: LoadScenario) -> dict[str, Any]:
    """The ``[server]`` table of the run: defaults this server knows, then the scenario's."""
    from imagerouter.server.settings import ServerSettings

    known = set(ServerSettings.model_fields)
    defaults = {k: v for k, v in SERVER_DEFAULTS.items() if k in known}
    return deep_merge(defaults, scenario.server)


def write_config(path: Path, scenario: LoadScenario) -> Path:
    """The run's ``imagerouter.toml``: ``[server]`` and ``[router]`` tables."""
    lines: list[str] = ["# Written by `imagerouter loadtest` for this run."]
    _toml_tables("server", server_settings(scenario), lines)
    if scenario.router:
        _toml_tables("router", scenario.router, lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _farm_argument(scenario: LoadScenario) -> str:
    """The farm scenario for ``serve --farm``: a bundled name, or a file (beside the scenario
    first), found by the farm's own resolver; an unknown one is left for ``serve`` to report."""
    farm = scenario.farm_scenario
    beside = Path(scenario.source).parent if scenario.source else None
    try:
        found = resolve_bundled(farm, FARM_SCENARIOS, relative_to=beside)
    except ConfigError:
        return farm
    return farm if found.bundled else str(found.path.resolve())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.setdefault("PYTHONUNBUFFERED", "1")
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _create_key(config: Path, data_dir: Path, log: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagerouter",
            "keys",
            "create",
            "--account",
            ACCOUNT,
            "--credits",
            str(CREDITS),
            "--name",
            "loadtest",
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
    )
    log.write_text(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"imagerouter keys create failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


async def _wait_ready(
    session: aiohttp.ClientSession,
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {log}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"{url}/readyz") as answer:
                if answer.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s; see {log}")


def _locust_commands(plan_path: Path, out: Path, host: str, workers: int) -> list[list[str]]:
    """The Locust command lines: one standalone process, or a master then its workers."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    report = out / "locust"
    main = [
        *base,
        "--headless",
        "-H",
        host,
        "--csv",
        str(report / "locust"),
        "--csv-full-history",
        "--html",
        str(report / "report.html"),
        "--only-summary",
        "--stop-timeout",  # a user being stopped finishes its submit first
        "5",
        "--loglevel",
        "WARNING",
    ]
    if workers <= 0:
        return [main]
    port = free_port()
    master = [
        *main,
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        "60",
    ]
    worker = [
        *base,
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(port),
        "--loglevel",
        "WARNING",
    ]
    return [master] + [worker] * workers


# --- progress ------------------------------------------------------------------------------------


def locust_now(history: Path) -> dict[str, float]:
    """The last aggregated row of Locust's stats history: users, RPS, failures."""
    try:
        lines = history.read_text().splitlines()
    except OSError:
        return {}
    header = lines[0].split(",") if lines else []
    for line in reversed(lines[1:]):
        row = dict(zip(header, next(csv.reader([line])), strict=False))
        if row.get("Name") == "Aggregated":
            with contextlib.suppress(ValueError, KeyError):
                return {
                    "users": float(row["User Count"]),
                    "rps": float(row["Requests/s"]),
                    "failures_per_s": float(row["Failures/s"]),
                    "requests": float(row["Total Request Count"]),
                    "failures": float(row["Total Failure Count"]),
                }
    return {}


def progress_line(
    t: float,
    duration: float,
    active: list[str],
    locust: dict[str, float],
    farm: dict[str, Any],
    breakers: dict[str, str],
    stage: str,
) -> str:
    """One line of progress: time, phases, users, RPS, farm answers, breakers."""
    farm_bits = []
    for name, entry in sorted(farm.get("providers", {}).items()):
        by = entry.get("by_status", {})
        bad = sum(n for s, n in by.items() if not s.startswith("2"))
        farm_bits.append(f"{name} {entry.get('generations', 0)} calls/{bad} errors")
    open_ = [n for n, s in sorted(breakers.items()) if s != "closed"]
    return (
        f"[{stage}] t={t:5.0f}/{duration:.0f}s "
        f"users={locust.get('users', 0):.0f} rps={locust.get('rps', 0):.0f} "
        f"fail/s={locust.get('failures_per_s', 0):.1f} | farm {' '.join(farm_bits)} | "
        f"breakers open: {','.join(open_) or '-'} | phases: {', '.join(active) or '-'}"
    )


# --- the run -------------------------------------------------------------------------------------


def _capabilities(routes: set[str]) -> dict[str, Any]:
    """Which ways of following a job this server offers, from its OpenAPI paths."""
    sse = next((p for p in sorted(routes) if p.startswith("/v1/jobs/{") and "events" in p), None)
    webhooks = any("webhook" in p for p in routes)
    return {"sse_path": sse, "sse": sse is not None, "webhooks": webhooks}


async def _webhook_secret(
    session: aiohttp.ClientSession, url: str, api_key: str, receiver_url: str
) -> str | None:
    """The account's signing secret: register the receiver (which creates the secret, shown
    once), then unregister it, so that only jobs naming a ``webhook_url`` send webhooks."""
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"url": f"{receiver_url}/hooks/account"}
    async with session.put(f"{url}/v1/webhook", json=body, headers=headers) as answer:
        if answer.status != 200:
            return None
        secret = (await answer.json()).get("secret")
    async with session.delete(f"{url}/v1/webhook", headers=headers) as answer:
        if answer.status != 200:
            return None
    return secret


async def _sample(api: ApiReader, farm: FarmReader, t: float) -> dict[str, Any]:
    """The farm's counters and the router's breaker states at ``t`` (errors recorded)."""
    sample: dict[str, Any] = {"t": round(t, 3), "farm": {}, "breakers": {}, "trips": {}}
    try:
        stats = await farm.stats()
        sample["farm"] = {
            "providers": {
                name: {
                    "requests": entry.get("requests", 0),
                    "generations": entry.get("generations", 0),
                    "by_status": entry.get("by_status", {}),
                    "inside_retry_after": entry.get("inside_retry_after", 0),
                }
                for name, entry in stats.get("providers", {}).items()
            }
        }
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample["farm_error"] = repr(exc)
    try:
        for entry in await api.providers():
            breaker = entry.get("breaker", {})
            sample["breakers"][entry["name"]] = breaker.get("state", "?")
            sample["trips"][entry["name"]] = breaker.get("total_trips", 0)
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        sample["server_error"] = repr(exc)
    return sample


class _Orchestration:
    """One run's state and steps; :func:`run_loadtest` calls them in order."""

    def __init__(self, options: RunOptions, session: aiohttp.ClientSession) -> None:
        self.options, self.session, self.show = options, session, options.show
        self.duration = float(options.duration_s or options.scenario.duration_s)
        self.scenario = options.scenario.scaled(self.duration)
        self.users = options.users or self.scenario.users
        self.out = options.out
        self.raw = self.out / "raw"
        self.deadline_s = float(self.scenario.router.get("deadline_s", 300.0))
        self.drain_s = options.drain_s if options.drain_s is not None else self.deadline_s + 15
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Any] = []
        self.receiver = Receiver()
        self.samples: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.switches: list[Switch] = []
        self.capabilities: dict[str, Any] = {}
        self.unavailable: list[str] = []
        self.locust_codes: list[int | None] = []
        self.server_code: int | None = None
        self.timeline: asyncio.Task[None] | None = None
        self.t0 = 0.0
        self.drain_end = 0.0
        self._began = time.monotonic()

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        handle = (self.out / "logs" / f"{name}.log").open("ab")
        self.logs.append(handle)
        self.processes[name] = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent
        )

    # --- 1-2: config, key, receiver, server, farm ----------------------------------------------

    async def start_server(self) -> None:
        """Write the config, create the key, start the receiver and the server; find the farm."""
        for folder in ("locust", "logs", "raw", "data"):
            (self.out / folder).mkdir(parents=True, exist_ok=True)
        config = write_config(self.out / "imagerouter.toml", self.scenario)
        self.api_key = _create_key(config, self.out / "data", self.out / "logs" / "keys.log")
        await self.receiver.start()
        self.receiver_url = self.receiver.url
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        serve = [
            sys.executable,
            "-m",
            "imagerouter",
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(self.out / "data"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--farm",
            _farm_argument(self.scenario),
        ]
        self._spawn("server", serve, _env())
        log = self.out / "logs" / "server.log"
        await _wait_ready(self.session, self.url, self.processes["server"], log)
        self.api = ApiReader(self.session, self.url, self.api_key)
        parts = urlsplit((await self.api.providers())[0]["base_url"])
        self.farm = FarmReader(self.session, f"{parts.scheme}://{parts.netloc}")

    async def prepare(self) -> LocustPlan:
        """Plan the farm timeline, learn what the server offers, write the Locust plan."""
        farm_doc = await self.farm.providers()
        base = {name: entry["faults"] for name, entry in farm_doc["providers"].items()}
        self.switches = plan_switches(self.scenario.phases, base, self.duration)
        self.capabilities = _capabilities(await self.api.routes())
        if self.capabilities["webhooks"]:
            secret = await _webhook_secret(self.session, self.url, self.api_key, self.receiver_url)
            if secret:
                self.receiver.secrets.append(secret)
            self.capabilities["webhooks"] = bool(secret)
        supported = {
            "poll": True,
            "sse": self.capabilities["sse"],
            "webhook": self.capabilities["webhooks"],
        }
        follow = dict(self.scenario.traffic.follow)
        self.unavailable = [mode for mode in follow if not supported[mode]]
        for mode in self.unavailable:  # those clients poll instead
            follow["poll"] = follow.get("poll", 0.0) + follow.pop(mode)
        return LocustPlan(
            scenario=self.scenario.name,
            host=self.url,
            api_key=self.api_key,
            users=self.users,
            duration_s=self.duration,
            traffic=self.scenario.traffic,
            follow=follow,
            follow_timeout_s=self.deadline_s + 15.0,
            records_dir=str(self.raw),
            receiver_url=self.receiver_url,
            sse_path=self.capabilities["sse_path"],
            seed=self.scenario.seed,
        )

    # --- 3-4: Locust and the farm timeline ------------------------------------------------------

    async def _apply(self, switch: Switch) -> None:
        await self.farm.set_faults(switch.provider, switch.faults)
        self.applied.append(
            {
                "at_s": switch.at_s,
                "applied_s": round(time.time() - self.t0, 3) if self.t0 else 0.0,
                "provider": switch.provider,
                "active": list(switch.active),
                "faults": switch.faults,
            }
        )

    async def _run_timeline(self, switches: list[Switch]) -> None:
        for switch in switches:
            delay = self.t0 + switch.at_s - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._apply(switch)

    async def start_locust(self, plan: LocustPlan) -> None:
        """Reset the farm, apply the switches of t=0, start Locust, then the timeline on
        Locust's clock (from its start notice)."""
        plan_path = plan.dump(self.out / "plan.json")
        await self.farm.reset()
        for switch in self.switches:
            if switch.at_s <= 0:
                await self._apply(switch)
        env = {**_env(), PLAN_ENV: str(plan_path)}
        commands = _locust_commands(plan_path, self.out, self.url, self.options.workers)
        for index, command in enumerate(commands):
            self._spawn("locust" if index == 0 else f"locust-worker-{index}", command, env)
        started = asyncio.create_task(self.receiver.started.wait())
        while not started.done():
            if self.processes["locust"].poll() is not None:
                started.cancel()
                raise RuntimeError(f"Locust exited; see {self.out / 'logs' / 'locust.log'}")
            await asyncio.wait({started}, timeout=0.2)
            if time.monotonic() - self._began > 90:
                started.cancel()
                raise RuntimeError("Locust did not start within 90 s")
        self.t0 = self.receiver.notices["started"]
        later = [switch for switch in self.switches if switch.at_s > 0]
        self.timeline = asyncio.create_task(self._run_timeline(later))

    async def watch(self) -> None:
        """Sample and show progress until Locust stops (bounded), then until the last job ends
        (bounded by the drain time); then stop Locust and the timeline."""
        locust = self.processes["locust"]
        history = self.out / "locust" / "locust_stats_history.csv"
        stage, last_shown = "load", 0.0
        hard_stop = self.t0 + self.duration + 60.0
        drain_until = math.inf
        while True:
            now = time.time()
            sample = await _sample(self.api, self.farm, now - self.t0)
            self.samples.append(sample)
            if stage == "load":
                if locust.poll() is not None or self.receiver.stopped.is_set():
                    stage, drain_until = "drain", time.time() + self.drain_s
                elif now > hard_stop:
                    self.show("Locust overran its run; stopping it")
                    stop_process(locust, 10)
                    stage, drain_until = "drain", time.time() + self.drain_s
            elif await self.api.active_jobs() == 0 or time.time() > drain_until:
                break
            if now - last_shown >= self.options.progress_every_s:
                last_shown = now
                phases = [n for n, a, b in self.scenario.phase_spans() if a <= now - self.t0 < b]
                self.show(
                    progress_line(
                        now - self.t0,
                        self.duration,
                        phases,
                        locust_now(history),
                        sample["farm"],
                        sample["breakers"],
                        stage,
                    )
                )
            await asyncio.sleep(SAMPLE_EVERY_S)
        self.drain_end = time.time()
        for name, process in list(self.processes.items()):
            if name.startswith("locust"):
                self.locust_codes.append(stop_process(process, 30))
        await self._stop_timeline()

    async def _stop_timeline(self) -> None:
        if self.timeline is not None and not self.timeline.done():
            self.timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.timeline

    # --- 5: the system's record, then stop everything --------------------------------------------

    async def collect(self) -> dict[str, Any]:
        """The jobs (with attempts), the account's ledger, the farm's and routers' counters."""
        self.show("collecting the server's jobs, ledger and the farm's counters")
        listed = await self.api.all_jobs()
        return {
            "jobs": await self.api.job_details([job["id"] for job in listed]),
            "account": await self.api.account(),
            "farm_stats": await self.farm.stats(),
            "providers": await self.api.providers(),
            "metrics": await self.api.metrics_text(),
        }

    async def aclose(self) -> None:
        """Stop every process this run started (by pid, newest first) and the receiver."""
        await self._stop_timeline()
        for name, process in reversed(list(self.processes.items())):
            code = stop_process(process, 30)
            if name == "server":
                self.server_code = code
        for handle in self.logs:
            handle.close()
        await self.receiver.aclose()


def _media_files(media: Path) -> list[Path]:
    """Every file under the server's local output storage."""
    return [path for path in media.rglob("*") if path.is_file()]


def _stored_keys(media: Path) -> list[str]:
    """Every file under the server's local output storage, as its storage key."""
    return sorted(path.relative_to(media).as_posix() for path in _media_files(media))


def _discard_media(media: Path) -> str:
    """Delete the run's stored images (realistic ones take gigabytes); say what they were."""
    files = _media_files(media)
    size = sum(path.stat().st_size for path in files)
    shutil.rmtree(media)
    return (
        f"deleted {len(files)} stored images ({size / 1e9:.2f} GB) from {media} "
        "(--keep-media keeps them)"
    )


async def run_loadtest(options: RunOptions) -> RunResult:
    """Run one scenario end to end and write its report folder; see the module doc."""
    from loadtests.report import write_report
    from loadtests.summary import RunData, load_records, save_run, summarize

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=64)
    ) as session:
        run = _Orchestration(options, session)
        try:
            await run.start_server()
            plan = await run.prepare()
            options.show(
                f"{run.scenario.name}: {run.users} users at peak, {run.duration:.0f} s, "
                f"{len(run.switches)} farm switches; server {run.url}, farm {run.farm.url}; "
                f"report in {run.out}"
            )
            if run.unavailable:
                options.show(f"not on this server, polled instead: {', '.join(run.unavailable)}")
            await run.start_locust(plan)
            await run.watch()
            record = await run.collect()
        finally:
            await run.aclose()

    media = run.out / "data" / "media"
    if record["metrics"]:
        (run.raw / "metrics.txt").write_text(record["metrics"])
    (run.raw / "providers.json").write_text(json.dumps(record["providers"], indent=1))
    data = RunData(
        scenario=run.scenario,
        users=run.users,
        workers=options.workers,
        t0=run.t0,
        traffic_end=run.receiver.notices.get("stopped", run.drain_end),
        drain_end=run.drain_end,
        jobs=record["jobs"],
        account=record["account"],
        farm_stats=record["farm_stats"],
        samples=run.samples,
        switches=run.applied,
        records=load_records(run.raw),
        webhooks=[arrival.as_dict() for arrival in run.receiver.arrivals],
        capabilities={**run.capabilities, "unavailable": run.unavailable},
        locust_dir=run.out / "locust",
        locust_exit_codes=run.locust_codes,
        server_exit_code=run.server_code,
        credits_granted=CREDITS,
        stored_outputs=_stored_keys(media) if media.is_dir() else None,
    )
    save_run(run.out, data)
    summary = summarize(data)
    write_report(run.out, data, summary)
    if media.is_dir() and not options.keep_media:
        options.show(_discard_media(media))
    return RunResult(out=run.out, summary=summary, ok=summary["ok"])
