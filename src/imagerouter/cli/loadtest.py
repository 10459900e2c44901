"""``imagerouter loadtest SCENARIO``: farm + router + Locust, then a report folder.

The work is in :mod:`loadtests.orchestrator`, imported when the command runs; this module only
parses options and prints the outcome.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from imagerouter.cli.output import console, err_console, fail
from imagerouter.cli.params import Duration, parse_duration
from imagerouter.errors import ConfigError
from imagerouter.extras import require

__all__ = ["loadtest", "parse_duration"]

#: Most Locust users and worker processes one run takes: far past what one machine drives.
MAX_USERS = 100_000
MAX_WORKERS = 256


def _list_scenarios() -> None:
    from loadtests.scenario import bundled_scenarios, load_load_scenario

    table = Table(title="Load-test scenarios (loadtests/scenarios/)")
    table.add_column("scenario", no_wrap=True)
    for column in ("users", "duration", "shape", "phases", "description"):
        table.add_column(column)
    for name in bundled_scenarios():
        scenario = load_load_scenario(name)
        table.add_row(
            name,
            str(scenario.users),
            f"{scenario.duration_s:.0f} s",
            scenario.traffic.shape,
            str(len(scenario.phases)),
            scenario.description,
        )
    console.print(table)


def _print_outcome(summary: dict[str, Any], out: Path) -> None:
    jobs, credits, ra = summary["jobs"], summary["credits"], summary["retry_after"]
    lat = summary["latency"]
    table = Table(title=f"loadtest {summary['scenario']['name']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    e2e = lat["end_to_end_s"].get("completed", {})
    rows = [
        (
            "jobs",
            f"{jobs['submitted']} submitted: {jobs['completed']} completed, "
            f"{jobs['failed']} failed, {jobs['canceled']} canceled, "
            f"{jobs['not_final']} not final, {len(jobs['lost'])} lost",
        ),
        (
            "failovers",
            ", ".join(f"{k} {v}" for k, v in summary["providers"]["failovers"].items()) or "none",
        ),
        (
            "breaker trips",
            ", ".join(f"{k} {v['trips']}" for k, v in summary["breakers"]["by_provider"].items())
            or "none",
        ),
        (
            "inside Retry-After",
            f"{ra['inside_retry_after']} (of {ra['retry_after_issued']} Retry-Afters issued)",
        ),
        (
            "submit p50/p95/p99",
            f"{lat['submit_ms']['p50']} / {lat['submit_ms']['p95']} / {lat['submit_ms']['p99']} ms",
        ),
        ("end to end p50/p95", f"{e2e.get('p50')} / {e2e.get('p95')} s (completed jobs)"),
        (
            "credits",
            f"charged {credits['charged']}, refunded {credits['refunded']}, "
            f"{'balanced' if credits['balanced'] else 'NOT balanced'}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for check in summary["checks"]:
        mark = "[green]ok[/green]" if check["ok"] else "[red]FAILED[/red]"
        console.print(f"  {mark} {check['name']}: {check['detail']}")
    console.print(f"report: {out / 'summary.md'} (Locust: {out / 'locust' / 'report.html'})")


@click.command()
@click.argument("scenario", required=False)
@click.option("--users", type=click.IntRange(1, MAX_USERS), help="Locust users at the peak.")
@click.option("--duration", type=Duration(), help="Traffic time (120, 90s, 2m); phases scale.")
@click.option(
    "--workers",
    type=click.IntRange(0, MAX_WORKERS),
    default=0,
    show_default=True,
    help="Locust worker processes under a master (0: one Locust process).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: loadtest-reports/SCENARIO-TIME). Must be new or empty.",
)
@click.option("--drain", type=Duration(), help="Longest wait for the last jobs after traffic.")
@click.option(
    "--keep-media",
    is_flag=True,
    help="Keep the stored images in the report folder (default: deleted after the report, "
    "which says how many and how big; realistic images take gigabytes).",
)
def loadtest(
    scenario: str | None,
    users: int | None,
    duration: float | None,
    workers: int,
    out: Path | None,
    drain: float | None,
    keep_media: bool,
) -> None:
    """Run a load-test SCENARIO: the farm, the router and Locust, then a report.

    SCENARIO is a bundled name (steady, launch-week, retry-after-compliance, total-outage,
    video-mix) or a TOML file; without one, list the bundled scenarios. Exits 0 when every
    check passed, 1 when one failed (the report says which), 2 when the run could not be made,
    130 when interrupted (Ctrl-C: every process stopped, no report).
    """
    from loadtests.scenario import load_load_scenario

    if scenario is None:
        _list_scenarios()
        return
    require("loadtest", "imagerouter loadtest")
    try:
        loaded = load_load_scenario(scenario)
    except ConfigError as exc:
        fail(exc)
    if out is None:
        out = Path("loadtest-reports") / f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        fail(f"--out {out}: the folder exists and is not empty")

    from loadtests.orchestrator import RunOptions, run_loadtest

    options = RunOptions(
        scenario=loaded,
        out=out.resolve(),
        users=users,
        duration_s=duration,
        workers=workers,
        drain_s=drain,
        keep_media=keep_media,
        show=lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    try:
        result = asyncio.run(run_loadtest(options))
    except (RuntimeError, OSError, ValueError, ConfigError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        # not 1, which says a check failed: a CI job must tell the two apart
        message = f"interrupted: no report; what the run wrote is in {out}"
        err_console.print(message, soft_wrap=True, markup=False, highlight=False)
        sys.exit(130)
    _print_outcome(result.summary, result.out)
    sys.exit(0 if result.ok else 1)
