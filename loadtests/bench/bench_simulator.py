"""Speed of the routing simulator: simulated jobs per minute of wall time, on one core.

Each case runs a bundled scenario through :class:`imagerouter.simulate.Simulation` (the router's
real plans, breakers, cooldowns, health scores and budgets, and the farm's fault engine) and
reports jobs simulated per wall-clock minute (and per CPU minute of this process, the figure
to compare when other work shares the machine) and events per second:

- ``launch-week-1h``: the launch-week shape squeezed into one virtual hour (20,000 jobs/min at
  the peak), four accounts with per-key rate limits, realistic generation times;
- ``429-storm``: the farm's fal-429-storm at a steady 20,000 jobs/min for ten minutes
  (30% of fal's answers are 429 with Retry-After: 2).

    python -m loadtests.bench.bench_simulator [--quick]

``--quick`` runs a tenth of each. Writes ``loadtests/bench/results/simulator.json``.
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import load_spec
from loadtests.bench.common import write_results

CASES: tuple[tuple[str, str, float, float | None], ...] = (
    # name, scenario, virtual hours, peak jobs per minute (None: the scenario's)
    ("launch-week-1h", "launch-week", 1.0, None),
    ("429-storm", "fal-429-storm", 1 / 6, 20000.0),
)


def run_case(scenario: str, hours: float, peak_per_min: float | None) -> dict[str, Any]:
    """Run one case; its speed and the size of what it simulated."""
    spec = load_spec(scenario).with_overrides(hours=hours, peak_per_min=peak_per_min)
    sim = Simulation(spec)
    cpu = time.process_time()
    metrics = sim.run()
    cpu_s = time.process_time() - cpu
    jobs = metrics.jobs_arrived
    return {
        "scenario": scenario,
        "virtual_hours": round(hours, 4),
        "peak_per_min": spec.settings.peak_per_min,
        "jobs": jobs,
        "provider_calls": sum(metrics.calls_total),
        "events": sim.events,
        "wall_s": round(sim.wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "jobs_per_wall_minute": round(jobs / sim.wall_s * 60),
        "jobs_per_cpu_minute": round(jobs / cpu_s * 60),
        "events_per_wall_second": round(sim.events / sim.wall_s),
        "success_rate": round(metrics.jobs_completed / jobs, 5) if jobs else None,
    }


def main() -> None:
    """Run every case, print a table, and write the results file."""
    scale = 0.1 if "--quick" in sys.argv[1:] else 1.0
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cases": {},
    }
    header = f"{'case':16} {'jobs':>10} {'wall s':>8} {'jobs/wall-min':>14} {'jobs/cpu-min':>13}"
    print(f"{header} {'events/s':>10}")
    for name, scenario, hours, peak in CASES:
        row = run_case(scenario, hours * scale, peak)
        results["cases"][name] = row
        print(
            f"{name:16} {row['jobs']:10,} {row['wall_s']:8.1f} "
            f"{row['jobs_per_wall_minute']:14,} {row['jobs_per_cpu_minute']:13,} "
            f"{row['events_per_wall_second']:10,}"
        )
    slowest = min(row["jobs_per_wall_minute"] for row in results["cases"].values())
    results["min_jobs_per_wall_minute"] = slowest
    print(f"simulated jobs per wall-clock minute (slowest case): {slowest:,}")
    print(f"written to {write_results('simulator', results)}")


if __name__ == "__main__":
    main()
