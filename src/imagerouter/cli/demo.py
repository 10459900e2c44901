"""``imagerouter demo`` (``make demo``): the job API with the farm in-process (fal rate-limits,
then goes down while WaveSpeed browns out, then everyone recovers), a burst of jobs submitted
over HTTP as a client would, and tables of what happened to each job, each provider, and the
account's credits."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click
from aiohttp import web
from rich.console import Console
from rich.table import Table

from imagerouter.auth import mint_key
from imagerouter.cli.output import console, fail
from imagerouter.errors import ImageRouterError
from imagerouter.extras import require
from imagerouter.resilience.breaker import BreakerTransition
from imagerouter.server.keys import store_key
from imagerouter.server.settings import ServerSettings

__all__ = ["DemoReport", "demo", "print_report", "run_demo"]

MODELS = ("gpt-image-2", "flux-dev", "gpt-image-1", "nano-banana-pro")
FINAL = {"completed", "failed", "canceled"}


@dataclass
class DemoReport:
    """What the demo saw: each job's final body, breaker transitions, farm stats, credits."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[BreakerTransition] = field(default_factory=list)
    farm_stats: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)


async def run_demo(scenario: str = "demo", jobs: int = 40, interval_s: float = 0.25) -> DemoReport:
    """Serve the API over the farm playing ``scenario`` on a free loopback port, submit
    ``jobs`` jobs one every ``interval_s`` over HTTP, and follow each to its end."""
    from imagerouter.server.app import create_app  # the server extra's modules
    from imagerouter.server.protocol import ApiRunner
    from mockproviders import Farm, load_scenario  # the farm is a dev/test tool, not core
    from mockproviders.bridge import farm_router

    report = DemoReport()
    with tempfile.TemporaryDirectory(prefix="imagerouter-demo-") as data_dir:
        settings = ServerSettings(data_dir=Path(data_dir), workers=16, poll_interval_s=0.05)
        async with Farm(scenario=load_scenario(scenario)) as farm:  # every plugin's API
            router = farm_router(farm, {"router": {"deadline_s": 30}}, seed=7)
            router.transitions.add(report.transitions.append)
            runner = ApiRunner(create_app(settings, router=router))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                token = await _demo_key(runner.app, credits=10_000)
                await _client(f"http://127.0.0.1:{port}", token, jobs, interval_s, report)
            finally:
                await runner.cleanup()
            report.farm_stats = farm.stats()
    return report


async def _demo_key(app: web.Application, credits: int) -> str:
    """An account with ``credits``, and a key for it (what ``imagerouter keys create`` does)."""
    store = app[store_key]
    account = await store.create_account("demo")
    await store.grant_credits(account.id, credits, "demo")
    minted = mint_key(account.id, "demo", time.time())
    await store.create_api_key(minted.record)
    return minted.token


async def _client(base: str, token: str, jobs: int, interval_s: float, report: DemoReport) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:

        async def one(number: int) -> None:
            await asyncio.sleep(number * interval_s)
            body = {
                "model": MODELS[number % len(MODELS)],
                "prompt": f"a lighthouse at dusk, take {number}",
            }
            started = time.perf_counter()
            async with http.post("/v1/jobs", json=body) as answer:
                job = await answer.json()
            for _ in range(1200):  # bounded: at most ~60 s of polling
                if job.get("status") in FINAL:
                    break
                await asyncio.sleep(0.05)
                async with http.get(f"/v1/jobs/{job['id']}") as answer:
                    job = await answer.json()
            job["seconds"] = time.perf_counter() - started
            job["number"] = number
            report.jobs.append(job)

        await asyncio.gather(*(one(number) for number in range(jobs)))
        async with http.get("/v1/account") as answer:
            report.account = await answer.json()
    report.jobs.sort(key=lambda job: job["number"])


def print_report(report: DemoReport, console: Console | None = None) -> None:
    """Jobs, then providers, then breaker transitions, then the account's credits."""
    console = console or Console()
    jobs = Table(title="Jobs (submitted over HTTP, followed to the end)")
    for column in ("job", "model", "providers tried", "outcome", "seconds"):
        jobs.add_column(column)
    calls: Counter[str] = Counter()
    rate_limited: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failovers: Counter[str] = Counter()
    served: Counter[str] = Counter()
    for job in report.jobs:
        made = [a for a in job.get("attempts") or [] if a["outcome"] in ("ok", "error")]
        tried = []
        for index, attempt in enumerate(made):
            provider = attempt["provider"]
            calls[provider] += 1
            if attempt["outcome"] == "error":
                errors[provider] += 1
                rate_limited[provider] += attempt["error_class"] == "RateLimited"
                if index + 1 < len(made) and made[index + 1]["provider"] != provider:
                    failovers[provider] += 1
                tried.append(f"[red]{provider}[/red] ({attempt['error_class']})")
            else:
                tried.append(f"[green]{provider}[/green]")
        result = job.get("result") or {}
        if job["status"] == "completed":
            served[result.get("provider", "?")] += 1
            text = f"[green]completed[/green] via {result.get('provider')}"
        else:
            text = f"[red]{job['status']}[/red] {(job.get('error') or {}).get('code', '')}"
        jobs.add_row(
            str(job["number"]),
            job["request"]["model"],
            " → ".join(tried) or "-",
            text,
            f"{job['seconds']:.2f}",
        )
    console.print(jobs)
    providers = Table(title="Providers")
    for column in (
        "provider",
        "calls",
        "served",
        "429s",
        "errors",
        "failovers",
        "trips",
        "in RA window",
    ):
        providers.add_column(column, justify="right")
    farm = report.farm_stats.get("providers", {})
    trips = Counter(t.name for t in report.transitions if t.to_state == "open")
    for provider in sorted(set(calls) | set(farm)):
        providers.add_row(
            provider,
            str(calls[provider]),
            str(served[provider]),
            str(rate_limited[provider]),
            str(errors[provider]),
            str(failovers[provider]),
            str(trips[provider]),
            str(farm.get(provider, {}).get("inside_retry_after", "-")),
        )
    console.print(providers)
    console.print(
        "failovers: calls that failed and moved the job to another provider; trips: breaker "
        "openings; in RA window: requests the farm saw while a Retry-After it had sent was "
        "still running (a well-behaved router keeps this at 0)."
    )
    for transition in report.transitions:
        console.print(
            f"breaker [bold]{transition.name}[/bold]: {transition.from_state} → "
            f"{transition.to_state} ({transition.reason})"
        )
    done = Counter(job["status"] for job in report.jobs)
    ledger = report.account.get("ledger") or []
    charged = -sum(e["amount"] for e in ledger if e["kind"] == "debit")
    refunded = sum(e["amount"] for e in ledger if e["kind"] == "refund")
    console.print(
        f"\n[bold]{done['completed']}/{len(report.jobs)} jobs completed[/bold], "
        f"{done['failed']} failed; credits charged {charged}, refunded {refunded}, "
        f"balance {report.account.get('balance')}."
    )


@click.command()
@click.option("--scenario", default="demo", show_default=True, help="Farm scenario name or file.")
@click.option(
    "--jobs", type=click.IntRange(min=1), default=40, show_default=True, help="How many jobs."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=0.25,
    show_default=True,
    help="Seconds between job starts.",
)
def demo(scenario: str, jobs: int, interval: float) -> None:
    """Serve the API over the in-process farm, submit jobs as a client would, show the outcome."""
    try:
        require("server,farm", "imagerouter demo")
        report = asyncio.run(run_demo(scenario, jobs, interval))
    except ImageRouterError as exc:
        fail(exc)
    print_report(report, console)
