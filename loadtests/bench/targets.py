"""The performance targets, checked against the figures a ``make bench`` run wrote.

Each target reads one figure from one results file (``loadtests/bench/results/<name>.json``);
a file written before the run began, or missing, is *not run*. ``make bench`` prints the table
last, with the bare handler's rate beside it: on a shared host the absolute targets follow the
host's speed, which that rate shows. ``python -m loadtests.bench.targets`` checks the results
files there are, whenever they were written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "POSTGRES_SUBMITS",
    "SIMULATOR",
    "SQLITE_P99",
    "SQLITE_RATIO",
    "TARGETS",
    "WHOLE_PATH",
    "Figure",
    "Target",
    "Verdict",
    "check",
    "format_figure",
    "read_document",
    "report",
]

Status = Literal["met", "not met", "not run"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a results file.

    Attributes:
        name: what is measured, as a table shows it.
        results: the results file's name (``submit`` for ``submit.json``).
        read: the figure from that file's document (None, or a KeyError, TypeError,
            IndexError or StopIteration, when it holds none).
        host: how the figure follows the host's speed: 1 for a rate (twice as fast a host,
            twice the figure), -1 for a cost or a time (half the figure), 0 for a ratio of
            one run, a size or a count (the same).
    """

    name: str
    results: str
    read: Callable[[dict[str, Any]], float | None]
    host: int = field(default=0, kw_only=True)

    def value_in(self, document: dict[str, Any] | None) -> float | None:
        """The figure in ``document`` (None when there is no document or no figure in it)."""
        if document is None:
            return None
        try:
            value = self.read(document)
        except (KeyError, TypeError, IndexError, StopIteration):
            return None
        return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Target(Figure):
    """A figure and its bound.

    Attributes:
        bound: the target.
        at_least: True if the figure must reach ``bound``; False if it must stay below it.
        valid: False for a document whose figure does not count (a run whose checks failed).
    """

    bound: float
    at_least: bool = True
    valid: Callable[[dict[str, Any]], bool] = lambda document: True


@dataclass(frozen=True, slots=True)
class Verdict:
    """A target's figure in one run, and whether it meets the bound."""

    target: Target
    figure: float | None
    status: Status


SQLITE_RATIO = Target(
    "SQLite durable submits / bare handler (wrk)",
    "submit",
    lambda d: d["summary"]["ratio_to_bare"]["imagerouter-sqlite"],
    1 / 3,
)
SQLITE_P99 = Target(
    "SQLite p99 ms at 1,000 submits/s offered",
    "submit",
    lambda d: d["summary"]["p99_ms_at_1000_per_s"]["imagerouter-sqlite"],
    25,
    at_least=False,
    host=-1,
)
POSTGRES_SUBMITS = Target(
    "PostgreSQL durable submits/s (wrk)",
    "submit",
    lambda d: d["saturation_median_per_s"]["imagerouter-postgres"],
    5000,
    host=1,
)
WHOLE_PATH = Target(
    "end to end jobs/s done, every job exact",
    "end_to_end",
    lambda d: d["done_per_s"],
    1500,
    valid=lambda d: d.get("exact") is True,
    host=1,
)
SIMULATOR = Target(
    "simulated jobs per wall-clock minute",
    "simulator",
    lambda d: d["min_jobs_per_wall_minute"],
    2_000_000,
    host=1,
)
#: The issue's targets, in the order the table shows them (each a figure too, which the
#: reproduction table reuses).
TARGETS = (SQLITE_RATIO, SQLITE_P99, POSTGRES_SUBMITS, WHOLE_PATH, SIMULATOR)


def check(results_dir: Path, since: float, targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    """Each target's verdict from the files in ``results_dir`` written at or after ``since``
    (a unix time)."""
    verdicts = []
    for target in targets:
        document = read_document(results_dir / f"{target.results}.json", since)
        figure = target.value_in(document)
        if figure is None:
            status: Status = "not run"
        elif not target.valid(document or {}):
            status = "not met"
        elif target.at_least:
            status = "met" if figure >= target.bound else "not met"
        else:
            status = "met" if figure < target.bound else "not met"
        verdicts.append(Verdict(target, figure, status))
    return verdicts


def report(results_dir: Path, since: float) -> str:
    """The targets table, and the bare handler's rate of the same run when there is one."""
    lines = [f"{'target':<44} {'bound':>12} {'this run':>12}  verdict"]
    for verdict in check(results_dir, since):
        target = verdict.target
        sign = ">=" if target.at_least else "<"
        lines.append(
            f"{target.name:<44} {sign:>2} {format_figure(target.bound):>9} "
            f"{format_figure(verdict.figure):>12}  {verdict.status}"
        )
    submit = read_document(results_dir / "submit.json", since)
    if submit is not None and "bare" in submit.get("saturation_median_per_s", {}):
        bare = submit["saturation_median_per_s"]["bare"]
        lines.append(
            f"host speed: the bare aiohttp handler answered {bare:,.0f} requests/s in this run "
            "(the absolute targets move with it)"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the table for the results files there are."""
    from loadtests.bench.common import RESULTS_DIR

    print(report(RESULTS_DIR, since=0.0))


def read_document(path: Path, since: float) -> dict[str, Any] | None:
    """The results file at ``path``, or None when it is missing, unreadable, or older than
    ``since`` (a unix time: written before the run began)."""
    try:
        if path.stat().st_mtime < since:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def format_figure(value: float | None) -> str:
    """A figure as a table shows it: thousands separated from 100 up, three digits below."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


if __name__ == "__main__":
    main()
