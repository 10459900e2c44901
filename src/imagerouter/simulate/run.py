"""Running simulations: one policy with its report, or several side by side (in parallel
processes, one per policy, as many at once as there are cores)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from imagerouter.simulate.report import write_compare, write_report
from imagerouter.simulate.simulator import Progress, Simulation
from imagerouter.simulate.spec import SimulationSpec

__all__ = ["run_compare", "run_one"]


def run_one(
    spec: SimulationSpec,
    out: Path | None = None,
    *,
    charts: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``spec``; with ``out``, write its report there. Returns the summary."""
    sim = Simulation(spec, progress=progress)
    sim.run()
    if out is None:
        from imagerouter.simulate.report import summarize

        return summarize(sim)
    return write_report(sim, out, charts=charts)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "policy"


def _run_in_child(spec: SimulationSpec, out: Path, charts: bool) -> dict[str, Any]:
    return run_one(spec, out, charts=charts)


def run_compare(
    specs: Sequence[SimulationSpec],
    out: Path,
    *,
    charts: bool = True,
    workers: int | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Run each spec (one per policy) into ``out/<policy>/``, then write the comparison into
    ``out``. Returns the summaries (in the order given) and the comparison table."""
    workers = workers or min(len(specs), os.cpu_count() or 1)
    dirs = []
    for spec in specs:
        name = _slug(spec.policy)
        while out / name in dirs:
            name += "-2"
        dirs.append(out / name)
    if workers <= 1 or len(specs) == 1:
        summaries = []
        for spec, directory in zip(specs, dirs, strict=True):
            summaries.append(run_one(spec, directory, charts=charts))
            if on_done is not None:
                on_done(summaries[-1])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_run_in_child, spec, directory, charts)
                for spec, directory in zip(specs, dirs, strict=True)
            ]
            summaries = []
            for future in futures:
                summaries.append(future.result())
                if on_done is not None:
                    on_done(summaries[-1])
    return summaries, write_compare(summaries, out)
