"""Whether a ``make bench`` run reproduces the README's figures.

The README quotes one ``make bench`` run; its results files are kept in
``loadtests/bench/reference/`` (a benchmark whose method changed since may have its file from
a standalone run of it, which the README then names). Each headline figure of a new run is
set against the same figure of that run, as a ratio, and is *within 20 %* or *off* by how
much; a figure that is zero there (a failover that failed no servable job) must be zero
again. The two runs' bare handler rates come first: on a shared host the absolute figures
follow the host's speed, and that rate shows how far it moved.

So each figure is also set against the reference *at the host's speed*: its ratio divided by
the ratio of the two bare handler rates, once for a rate and inversely for a cost or a time
(:attr:`~loadtests.bench.targets.Figure.host`), so that a host 0.64 times as fast expects
0.64 times the submits/s and 1/0.64 times the µs a job. It says whether the code performs as
it did when the host does not; the plain ratio stays the verdict on the figure as printed.

``make bench`` prints the table after the targets. ``python -m loadtests.bench.reproduce``
compares the results files there are, whenever they were written; ``--save`` makes them the
reference, for when the README is refreshed from a new run.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loadtests.bench.targets import (
    POSTGRES_SUBMITS,
    SIMULATOR,
    SQLITE_P99,
    SQLITE_RATIO,
    WHOLE_PATH,
    Figure,
    format_figure,
    read_document,
)

__all__ = ["FIGURES", "Comparison", "compare", "report", "save"]

REFERENCE_DIR = Path(__file__).parent / "reference"
#: How far a figure may move and still reproduce (the issue's bound).
TOLERANCE = 0.20

Status = Literal["within 20 %", "off", "not run", "no reference"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """A figure in the reference run and in this one, and whether it reproduced, as printed
    and at the host's speed."""

    figure: Figure
    reference: float | None
    value: float | None
    status: Status
    #: This run's bare handler rate over the reference run's (None when either is missing).
    host_speed: float | None = None

    @property
    def ratio(self) -> float | None:
        """This run's figure over the reference's (None when either is missing or zero)."""
        if self.reference is None or self.value is None or self.reference == 0:
            return None
        return self.value / self.reference

    @property
    def scaled_ratio(self) -> float | None:
        """:attr:`ratio` with the host's change of speed taken out of it (None for the host's
        own figure, or without a speed)."""
        if self.ratio is None or self.host_speed is None or self.figure is BARE:
            return None
        return self.ratio / self.host_speed**self.figure.host

    @property
    def scaled_status(self) -> Status:
        """:attr:`status` of :attr:`scaled_ratio` (a figure the host does not move, or one
        that was zero, keeps its own)."""
        if self.figure.host == 0 or self.status not in ("within 20 %", "off"):
            return self.status
        scaled = self.scaled_ratio
        if scaled is None:
            return self.status
        return "within 20 %" if abs(scaled - 1) <= TOLERANCE else "off"


def _sqlite_one_replica(document: dict[str, Any]) -> float:
    row = next(r for r in document["rows"] if r["store"] == "sqlite" and r["replicas"] == 1)
    return row["submit"]["per_s"]


def _failover_sum(key: str) -> Callable[[dict[str, Any]], float]:
    return lambda document: sum(case[key] for case in document.values())


BARE = Figure(
    "bare handler requests/s (wrk): the host's speed",
    "submit",
    lambda d: d["saturation_median_per_s"]["bare"],
    host=1,
)

FIGURES = (
    Figure(
        "SQLite durable submits/s (wrk)",
        "submit",
        lambda d: d["saturation_median_per_s"]["imagerouter-sqlite"],
        host=1,
    ),
    SQLITE_RATIO,
    SQLITE_P99,
    POSTGRES_SUBMITS,
    WHOLE_PATH,
    Figure(
        "end to end server CPU ms a job",
        "end_to_end",
        lambda d: d["server_cpu_ms_per_job"],
        host=-1,
    ),
    Figure(
        "end to end jobs/s done, provider call",
        "end_to_end",
        lambda d: d["stages"][0]["done_per_s"],
        host=1,
    ),
    Figure(
        "end to end server instructions a job (M)",
        "instructions",
        lambda d: d["instructions_per_job"] / 1e6,
    ),
    Figure("store µs of CPU a job's life", "store", lambda d: d["cpu_us_per_job"], host=-1),
    Figure("store µs a job read back", "store", lambda d: d["read_us"], host=-1),
    Figure(
        "file create µs of CPU (data disk)",
        "file_create",
        lambda d: d["places"]["data disk"]["user_us"] + d["places"]["data disk"]["system_us"],
        host=-1,
    ),
    Figure(
        "lean pool µs of CPU a request",
        "http_client",
        lambda d: d["medians"]["lean pool"]["cpu_us_per_request"],
        host=-1,
    ),
    Figure("lean pool CPU / aiohttp's", "http_client", lambda d: d["cpu_ratio_pool_to_aiohttp"]),
    Figure(
        "router / direct call throughput",
        "router_overhead",
        lambda d: d["comparison"]["throughput_ratio"],
    ),
    Figure(
        "memory KiB a queued job",
        "memory",
        lambda d: d["configs"]["queued"]["kib_per_job_in_flight"],
    ),
    Figure(
        "memory KiB a running job",
        "memory",
        lambda d: d["configs"]["running"]["kib_per_job_in_flight"],
    ),
    SIMULATOR,
    Figure(
        "Redis shared rate-limit check p50 ms",
        "redis_state",
        lambda d: d["rate_limits"]["shared_check"]["p50_ms"],
        host=-1,
    ),
    Figure(
        "replicas: SQLite ×1 submits/s (Python client)", "replicas", _sqlite_one_replica, host=1
    ),
    Figure(
        "failover: jobs failed while servable",
        "failover",
        _failover_sum("failed_while_servable"),
    ),
    Figure(
        "failover: requests inside a Retry-After",
        "failover",
        _failover_sum("inside_retry_after"),
    ),
)


def _read(figure: Figure, directory: Path, since: float) -> float | None:
    return figure.value_in(read_document(directory / f"{figure.results}.json", since))


def compare(
    results_dir: Path,
    reference_dir: Path,
    since: float,
    figures: tuple[Figure, ...] = (BARE, *FIGURES),
) -> list[Comparison]:
    """Each figure of the run in ``results_dir`` (files written at or after ``since``, a unix
    time) against the reference run's."""
    bare = _read(BARE, reference_dir, 0.0), _read(BARE, results_dir, since)
    speed = bare[1] / bare[0] if bare[0] and bare[1] else None
    comparisons = []
    for figure in figures:
        reference = _read(figure, reference_dir, 0.0)
        value = _read(figure, results_dir, since)
        status: Status
        if reference is None:
            status = "no reference"
        elif value is None:
            status = "not run"
        elif reference == 0:
            status = "within 20 %" if value == 0 else "off"
        else:
            status = "within 20 %" if abs(value / reference - 1) <= TOLERANCE else "off"
        comparisons.append(Comparison(figure, reference, value, status, speed))
    return comparisons


def _verdict(comparison: Comparison, status: Status, ratio: float | None) -> str:
    if status == "off" and ratio is not None:
        return f"off by {100 * (ratio - 1):+.0f} %"
    if comparison.reference == 0 and comparison.value is not None:
        return "the same" if status == "within 20 %" else "off: was 0"
    return status


def report(results_dir: Path, since: float, reference_dir: Path = REFERENCE_DIR) -> str:
    """The table: every figure, the reference run's and this run's, the ratio and its
    verdict, then both at the host's speed; and counts of the figures that reproduced."""
    comparisons = compare(results_dir, reference_dir, since)
    lines = [
        f"{'figure (README run / this run)':<48} {'README':>11} {'this run':>11} {'ratio':>6}  "
        f"{'verdict':<16} {'at the host speed':>17}"
    ]
    for c in comparisons:
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
        scaled = "-" if c.scaled_ratio is None else f"{c.scaled_ratio:.2f}"
        shown = "" if c.figure is BARE else _verdict(c, c.scaled_status, c.scaled_ratio)
        lines.append(
            f"{c.figure.name:<48} {format_figure(c.reference):>11} "
            f"{format_figure(c.value):>11} {ratio:>6}  {_verdict(c, c.status, c.ratio):<16} "
            f"{scaled:>6}  {shown}".rstrip()
        )
    measured = [c for c in comparisons[1:] if c.status in ("within 20 %", "off")]
    within = sum(1 for c in measured if c.status == "within 20 %")
    scaled_within = sum(1 for c in measured if c.scaled_status == "within 20 %")
    speed = comparisons[0].host_speed if comparisons else None
    lines.append(f"{within} of {len(measured)} figures run reproduced within 20 %")
    if speed is not None:
        lines.append(
            f"{scaled_within} of {len(measured)} at the host's speed (this run's bare handler "
            f"rate {speed:.2f} times the README run's)"
        )
    return "\n".join(lines)


def save(results_dir: Path, reference_dir: Path = REFERENCE_DIR) -> list[Path]:
    """Make the results files in ``results_dir`` the reference (the README's run)."""
    reference_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({figure.results for figure in (BARE, *FIGURES)})
    saved = []
    for name in names:
        source = results_dir / f"{name}.json"
        if source.exists():
            saved.append(Path(shutil.copy2(source, reference_dir / source.name)))
    return saved


def main(argv: list[str] | None = None) -> None:
    """Print the table for the results files there are, or (``--save``) keep them."""
    from loadtests.bench.common import RESULTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--save", action="store_true", help="Make the results files the README's reference."
    )
    args = parser.parse_args(argv)
    if args.save:
        for path in save(RESULTS_DIR):
            print(f"kept {path}")
        return
    print(report(RESULTS_DIR, since=0.0))


if __name__ == "__main__":
    main()
