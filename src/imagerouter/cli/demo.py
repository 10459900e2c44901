"""``imagerouter demo``: the job API over the in-process farm, with a client's view of it."""

from __future__ import annotations

import asyncio

import click

from imagerouter.cli.output import console, fail
from imagerouter.errors import ImageRouterError

__all__ = ["demo"]


@click.command()
@click.option("--scenario", default="demo", show_default=True, help="Farm scenario name or file.")
@click.option("--jobs", default=40, show_default=True, help="How many jobs to run.")
@click.option("--interval", default=0.25, show_default=True, help="Seconds between job starts.")
def demo(scenario: str, jobs: int, interval: float) -> None:
    """Serve the API over the in-process farm, submit jobs as a client would, show the outcome."""
    from imagerouter.demo import print_report, run_demo

    try:
        report = asyncio.run(run_demo(scenario, jobs, interval))
    except ImageRouterError as exc:
        fail(exc)
    print_report(report, console)
