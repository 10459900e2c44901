"""``imagerouter simulate``: the routing policies on a virtual clock, with a report.

The simulator (:mod:`imagerouter.simulate`) is imported when the command runs; it needs the
``simulate`` extra, and its PNG charts the ``charts`` extra (or ``--no-charts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from imagerouter.cli.output import console, err_console, fail
from imagerouter.cli.params import SEED, FiniteFloat
from imagerouter.errors import ImageRouterError
from imagerouter.extras import require

__all__ = ["simulate"]

#: Bounds of --hours and --rate: a year of virtual time, a million jobs a minute at the peak.
MAX_HOURS = 24 * 366
MAX_PEAK_PER_MIN = 1_000_000


def _overview(summaries: list[dict[str, Any]]) -> Table:
    """The headline figures of each run, one column per policy."""
    from imagerouter.simulate.report import compare_rows

    rows = compare_rows(summaries)
    table = Table(title=f"Simulation: {summaries[0]['scenario']}")
    for i, header in enumerate(rows[0]):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows[1:]:
        table.add_row(*row)
    return table


@click.command()
@click.argument("scenario")
@click.argument("policies", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--hours",
    type=FiniteFloat(most=MAX_HOURS),
    help="Virtual hours to simulate (default: the scenario's).",
)
@click.option(
    "--seed", type=SEED, help="Seed of traffic, faults and routing (default: scenario's)."
)
@click.option(
    "--rate",
    "peak_per_min",
    type=FiniteFloat(most=MAX_PEAK_PER_MIN),
    help="Peak jobs per minute (overrides it).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="A policy: router config TOML laid over the scenario's (breaker, limits, catalog…).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Run each POLICIES file (and the base, if only one is given) side by side.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Report directory [default: simulate-out/SCENARIO].",
)
@click.option("--no-charts", is_flag=True, help="Skip the PNG charts.")
def simulate(
    scenario: str,
    policies: tuple[str, ...],
    hours: float | None,
    seed: int | None,
    peak_per_min: float | None,
    config_path: str | None,
    compare: bool,
    out: str | None,
    no_charts: bool,
) -> None:
    """Simulate SCENARIO (a bundled name such as launch-week, or a TOML file) on a virtual
    clock, through the router's own breakers, cooldowns, health scores, budgets and limits.

    Leaves summary.json, summary.md, transitions.csv and PNG charts in --out; with --compare,
    one such report per policy plus compare.json and compare.md.
    """
    require("simulate" if no_charts else "simulate,charts", "imagerouter simulate")
    from imagerouter.simulate.report import phases_line
    from imagerouter.simulate.run import run_compare, run_one
    from imagerouter.simulate.spec import apply_policy, fault_phases, load_spec

    if policies and not compare:
        fail("policy files as arguments need --compare (or use --config for one policy)")
    if compare and not policies:
        fail("--compare needs at least one policy file")
    try:
        spec = load_spec(scenario).with_overrides(hours=hours, seed=seed, peak_per_min=peak_per_min)
        if config_path:
            spec = apply_policy(spec, config_path)
        specs = [apply_policy(spec, policy) for policy in policies]
        if len(specs) == 1:
            specs.insert(0, spec)
    except (ImageRouterError, ValueError) as exc:
        fail(exc)
    target = Path(out) if out else Path("simulate-out") / spec.name
    try:  # before the run, which may take minutes: a report it could not write is a lost run
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        fail(f"--out {target}: {exc.strerror or exc}")
    settings = spec.settings
    phases = fault_phases(spec)
    if not all(phase["reached"] for phase in phases):
        # a short --hours ends before faults that come later on the scenario's clock: the
        # run would read as an all-clear for faults it never met
        said = phases_line(phases, settings.hours).replace("**", "")
        err_console.print(f"[yellow]warning:[/yellow] {said}", soft_wrap=True)
    console.print(
        f"simulating [bold]{spec.name}[/bold]: {settings.hours:g} h of {settings.shape} "
        f"traffic at up to {settings.peak_per_min:,.0f} jobs/min"
        + (f", {len(specs)} policies" if compare else f", policy {spec.policy}")
    )
    try:
        if compare:
            summaries, _ = run_compare(
                specs,
                target,
                charts=not no_charts,
                on_done=lambda s: console.print(
                    f"  {s['policy']}: {s['jobs']['arrived']:,} jobs "
                    f"in {s['speed']['wall_s']:.0f} s"
                ),
            )
        else:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% virtual time, {task.fields[jobs]:,} jobs"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("simulating", total=1.0, jobs=0)
                summaries = [
                    run_one(
                        spec,
                        target,
                        charts=not no_charts,
                        progress=lambda done, jobs: bar.update(task, completed=done, jobs=jobs),
                    )
                ]
    except (ImageRouterError, ValueError) as exc:
        fail(exc)
    console.print(_overview(summaries))
    speed = summaries[0]["speed"]
    console.print(
        f"{speed['jobs_per_wall_minute']:,} simulated jobs per wall-clock minute; "
        f"report in [bold]{target}[/bold]"
    )
