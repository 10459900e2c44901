"""``make demo``: the farm in-process with fal rate-limiting and then going down, a batch of jobs
through the router, and a table of what happened to each job and each provider."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from imagerouter.breaker import BreakerTransition
from imagerouter.errors import ImageRouterError, ProviderError
from imagerouter.models import ImageRequest, ImageResult
from imagerouter.plugins import load_plugins
from imagerouter.router import Router

__all__ = ["DemoReport", "run_demo"]

MODELS = ("gpt-image-2", "flux-dev", "gpt-image-1", "nano-banana-pro")


@dataclass
class DemoReport:
    """What the demo saw: each job's outcome and attempts, breaker transitions, farm stats."""

    jobs: list[tuple[int, str, ImageResult | ImageRouterError, float]] = field(default_factory=list)
    transitions: list[BreakerTransition] = field(default_factory=list)
    farm_stats: dict = field(default_factory=dict)


async def run_demo(scenario: str = "demo", jobs: int = 40, interval_s: float = 0.25) -> DemoReport:
    """Run ``jobs`` jobs, one every ``interval_s``, against the farm playing ``scenario``."""
    from mockproviders import Farm, load_scenario  # the farm is a dev/test tool, not core

    report = DemoReport()
    adapters = load_plugins().farm_adapters  # Replicate's API comes from its plugin
    async with Farm(scenario=load_scenario(scenario), adapters=adapters) as farm:
        router = Router.from_farm(
            farm, {"router": {"deadline_s": 30}}, on_transition=report.transitions.append, seed=7
        )
        async with router:

            async def one(number: int) -> None:
                await asyncio.sleep(number * interval_s)
                request = ImageRequest(
                    model=MODELS[number % len(MODELS)],
                    prompt=f"a lighthouse at dusk, take {number}",
                )
                started = time.perf_counter()
                outcome: ImageResult | ImageRouterError
                try:
                    outcome = await router.generate(request)
                except ImageRouterError as exc:
                    outcome = exc
                report.jobs.append((number, request.model, outcome, time.perf_counter() - started))

            await asyncio.gather(*(one(number) for number in range(jobs)))
        report.farm_stats = farm.stats()
    report.jobs.sort(key=lambda job: job[0])
    return report


def _attempts(outcome: ImageResult | ImageRouterError) -> list[dict]:
    if isinstance(outcome, ImageResult):
        return outcome.attempts
    return [a.as_dict() for a in getattr(outcome, "attempts", [])]


def print_report(report: DemoReport, console: Console | None = None) -> None:
    """The two tables: jobs, then providers; then breaker transitions and the farm's count."""
    console = console or Console()
    jobs = Table(title="Jobs", show_lines=False)
    for column in ("job", "model", "providers tried", "outcome", "seconds"):
        jobs.add_column(column)
    calls: Counter[str] = Counter()
    rate_limited: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failovers: Counter[str] = Counter()
    served: Counter[str] = Counter()
    for number, model, outcome, seconds in report.jobs:
        tried = []
        made = [a for a in _attempts(outcome) if a["outcome"] != "skipped"]
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
        if isinstance(outcome, ImageResult):
            served[outcome.provider] += 1
            text = f"[green]ok[/green] via {outcome.provider}"
        else:
            kind = outcome.error_class if isinstance(outcome, ProviderError) else outcome.code
            text = f"[red]failed[/red] {kind}"
        jobs.add_row(str(number), model, " → ".join(tried) or "-", text, f"{seconds:.2f}")
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
    ok = sum(isinstance(outcome, ImageResult) for _, _, outcome, _ in report.jobs)
    console.print(f"\n[bold]{ok}/{len(report.jobs)} jobs completed.[/bold]")
