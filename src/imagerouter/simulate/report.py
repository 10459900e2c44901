"""A run's report: ``summary.json``, ``summary.md`` and the breaker transitions as CSV; and
the side-by-side comparison of several policies (``compare.json``, ``compare.md``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import fault_phases

__all__ = ["COMPARE_ROWS", "compare_rows", "summarize", "write_compare", "write_report"]

#: Transitions listed in summary.json (all of them go to transitions.csv).
_TRANSITIONS_IN_SUMMARY = 200


def summarize(sim: Simulation) -> dict[str, Any]:
    """Everything a run measured, as a JSON-ready dict (see the README for each field)."""
    m, spec, settings = sim.metrics, sim.spec, sim.spec.settings
    farm = sim.world.stats.snapshot()["providers"]
    instances = m.instances_summary()
    windows: dict[tuple[str, str], dict[str, int]] = {}
    for name, account in sim.world.accounts.items():
        counters = farm[account.tier]["keys"].get(account.key, {})
        inside = sim.world.windows[account.tier].counts(account.key)
        windows[account.tier, account.key] = inside
        instances[name].update(
            plugin=account.plugin,
            key=account.key,
            by_status=counters.get("by_status", {}),
            **inside,
            provider_queue_max=account.max_queue,
        )
    calls = sum(m.calls_total)
    wasted = sum(sum(c.values()) for c in m.error_classes) + sum(m.cancelled)
    jobs_done = m.jobs_completed + m.jobs_failed
    routed = sim.router.instances.values()
    budget_rejected = sum(i.retry_budget.snapshot()["rejected"] for i in routed)
    return {
        "scenario": spec.name,
        "policy": spec.policy,
        "description": settings.description,
        "farm_scenario": spec.farm.source,
        "seed": settings.seed,
        "hours": settings.hours,
        "phases": fault_phases(spec),
        "traffic": {
            "shape": settings.shape,
            "peak_per_min": settings.peak_per_min,
            "shape_params": settings.shape_params,
            "models": settings.models,
            "quality": settings.quality,
        },
        "jobs": {
            "arrived": m.jobs_arrived,
            "completed": m.jobs_completed,
            "failed": m.jobs_failed,
            "success_rate": round(m.jobs_completed / jobs_done, 6) if jobs_done else None,
            "failed_by": dict(m.failed_by.most_common()),
            "failed_while_servable": sum(m.failed_while_servable.values()),
            "failed_while_servable_by": dict(m.failed_while_servable.most_common()),
            "failed_over": m.jobs_failed_over,
            "calls_per_job": {str(k): v for k, v in sorted(m.calls_per_job.items())},
        },
        "latency": m.latency(),
        "calls": {
            "total": calls,
            "per_job": round(calls / jobs_done, 4) if jobs_done else None,
            "wasted": wasted,
            "failovers": m.failovers,
            "hedges_cancelled": sum(m.cancelled),
            "retry_budget_rejected": budget_rejected,
            "waits": m.waits,
            "waits_per_job": round(m.waits / jobs_done, 4) if jobs_done else None,
        },
        "retry_after": {
            "issued": sum(w["retry_after_issued"] for w in windows.values()),
            "inside_window": sum(w["inside_retry_after"] for w in windows.values()),
            "inside_window_raw": sum(w["inside_retry_after_raw"] for w in windows.values()),
        },
        "breakers": {
            "trips": sum(m.trips().values()),
            "transitions": len(m.transitions),
            "first_transitions": [
                {
                    "at_s": t.at_s,
                    "name": t.name,
                    "from": t.from_state,
                    "to": t.to_state,
                    "reason": t.reason,
                }
                for t in m.transitions[:_TRANSITIONS_IN_SUMMARY]
            ],
        },
        "cost": {
            "credits_charged": m.credits,
            "credits_refunded": m.refunded_credits,
            "provider_usd": round(sum(m.usd), 2),
            "cancelled_hedges_usd": round(sum(m.cancelled_usd), 2),
            "usd_per_completed_job": round(sum(m.usd) / m.jobs_completed, 5)
            if m.jobs_completed
            else None,
        },
        "instances": instances,
        "speed": {
            "wall_s": round(sim.wall_s, 3),
            "events": sim.events,
            "jobs_per_wall_minute": round(m.jobs_arrived / sim.wall_s * 60) if sim.wall_s else None,
        },
        "timeline": m.timeline(),
    }


def phases_line(phases: Sequence[dict[str, Any]], hours: float) -> str:
    """How many of the scenario's fault phases the run reached, naming those it did not."""
    if not phases:
        return "No fault phases: every provider as its profile says throughout."
    late = [p for p in phases if not p["reached"]]
    line = f"Fault phases: {len(phases) - len(late)} of {len(phases)} reached"
    if not late:
        return line + "."
    starts = ", ".join(f"{p['provider']} at {p['at_s'] / 3600:g} h" for p in late)
    return (
        f"{line}. **Not reached** in these {hours:g} h (phases keep the scenario's clock): "
        f"{starts}."
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _markdown(summary: dict[str, Any]) -> str:
    jobs, latency, calls = summary["jobs"], summary["latency"], summary["calls"]
    lines = [
        f"# Simulation: {summary['scenario']} (policy: {summary['policy']})",
        "",
        summary["description"] or "",
        "",
        f"{summary['hours']} h of `{summary['traffic']['shape']}` traffic peaking at "
        f"{summary['traffic']['peak_per_min']:,.0f} jobs/min, seed {summary['seed']}; "
        f"simulated in {summary['speed']['wall_s']:.1f} s "
        f"({_fmt(summary['speed']['jobs_per_wall_minute'])} jobs per wall-clock minute).",
        "",
        phases_line(summary["phases"], summary["hours"]),
        "",
        "## Jobs",
        "",
        "| arrived | completed | failed | failed while servable | success rate | failed over |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {_fmt(jobs['arrived'])} | {_fmt(jobs['completed'])} | {_fmt(jobs['failed'])} | "
        f"{_fmt(jobs['failed_while_servable'])} | "
        f"{_fmt(jobs['success_rate'])} | {_fmt(jobs['failed_over'])} |",
        "",
        "Failed by reason: "
        + (", ".join(f"{k} {v:,}" for k, v in jobs["failed_by"].items()) or "none"),
        "",
        "## Latency (seconds)",
        "",
        "| | p50 | p90 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("total_s", "arrival → image"),
        ("provider_s", "provider (the call that delivered)"),
        ("queueing_s", "queueing (waits, backoffs, failed calls)"),
    ):
        row = latency[name]
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt(row[k]) for k in ("p50", "p90", "p95", "p99", "max"))
            + " |"
        )
    lines += [
        "",
        "## Calls, Retry-After, breakers, cost",
        "",
        f"- provider calls: {_fmt(calls['total'])} ({_fmt(calls['per_job'])} per job); "
        f"wasted (errors + cancelled hedges): {_fmt(calls['wasted'])}; "
        f"failovers: {_fmt(calls['failovers'])}; "
        f"retries refused by the retry budget: {_fmt(calls['retry_budget_rejected'])}; "
        f"waits (wake-ups of jobs with nothing callable): {_fmt(calls['waits'])} "
        f"({_fmt(calls['waits_per_job'])} per job)",
        f"- Retry-After windows issued: {_fmt(summary['retry_after']['issued'])}; requests "
        f"inside one (after the grace): {_fmt(summary['retry_after']['inside_window'])} "
        f"(raw: {_fmt(summary['retry_after']['inside_window_raw'])})",
        f"- breaker trips: {_fmt(summary['breakers']['trips'])} "
        f"({_fmt(summary['breakers']['transitions'])} transitions)",
        f"- credits charged: {_fmt(summary['cost']['credits_charged'])} "
        f"(refunded: {_fmt(summary['cost']['credits_refunded'])}); provider cost: "
        f"${summary['cost']['provider_usd']:,.2f} "
        f"(${_fmt(summary['cost']['usd_per_completed_job'])} per completed job)",
        "",
        "## Provider instances",
        "",
        "| instance | calls | served | share | errors | 429s | inside RA | trips | cost $ |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, row in summary["instances"].items():
        errors = ", ".join(f"{k} {v:,}" for k, v in row["errors"].items()) or "-"
        lines.append(
            f"| {name} | {_fmt(row['calls'])} | {_fmt(row['served'])} | {row['share']:.1%} | "
            f"{errors} | {_fmt(row['by_status'].get('429', 0))} | "
            f"{_fmt(row['inside_retry_after'])} | {_fmt(row['breaker_trips'])} | "
            f"{row['cost_usd']:,.2f} |"
        )
    lines += ["", "Charts: `traffic.png`, `shares.png`, `latency.png`, `breakers.png`.", ""]
    return "\n".join(lines)


def write_report(sim: Simulation, out: Path, *, charts: bool = True) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md``, ``transitions.csv`` and (with ``charts``) the
    PNG charts of a finished run into ``out``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(sim)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_markdown(summary))
    with (out / "transitions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["at_s", "instance", "from", "to", "reason", "open_for_s"])
        for t in sim.metrics.transitions:
            writer.writerow([t.at_s, t.name, t.from_state, t.to_state, t.reason, t.open_for_s])
    if charts:
        from imagerouter.simulate.charts import write_charts

        write_charts(summary, sim.metrics.transitions, out)
    return summary


#: The rows of a comparison: (label, path into the summary).
COMPARE_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jobs arrived", ("jobs", "arrived")),
    ("jobs completed", ("jobs", "completed")),
    ("jobs failed", ("jobs", "failed")),
    ("failed while servable", ("jobs", "failed_while_servable")),
    ("success rate", ("jobs", "success_rate")),
    ("latency p50 (s)", ("latency", "total_s", "p50")),
    ("latency p95 (s)", ("latency", "total_s", "p95")),
    ("latency p99 (s)", ("latency", "total_s", "p99")),
    ("queueing p95 (s)", ("latency", "queueing_s", "p95")),
    ("provider calls", ("calls", "total")),
    ("wasted calls", ("calls", "wasted")),
    ("failovers", ("calls", "failovers")),
    ("retry budget refusals", ("calls", "retry_budget_rejected")),
    ("waits per job", ("calls", "waits_per_job")),
    ("breaker trips", ("breakers", "trips")),
    ("429s received", ("retry_after", "issued")),
    ("inside Retry-After", ("retry_after", "inside_window")),
    ("credits charged", ("cost", "credits_charged")),
    ("provider cost ($)", ("cost", "provider_usd")),
    ("$ per completed job", ("cost", "usd_per_completed_job")),
)


def _dig(summary: dict[str, Any], path: Sequence[str]) -> Any:
    value: Any = summary
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def compare_rows(summaries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The comparison table: a header row (policy names), then one row per measure, plus
    each instance's share."""
    rows = [["measure", *(s["policy"] for s in summaries)]]
    for label, path in COMPARE_ROWS:
        rows.append([label, *(_fmt(_dig(s, path)) for s in summaries)])
    names = list(dict.fromkeys(n for s in summaries for n in s["instances"]))
    for name in names:
        rows.append(
            [
                f"share {name}",
                *(
                    f"{s['instances'][name]['share']:.1%}" if name in s["instances"] else "-"
                    for s in summaries
                ),
            ]
        )
    return rows


def write_compare(summaries: Sequence[dict[str, Any]], out: Path) -> list[list[str]]:
    """Write ``compare.json`` and ``compare.md`` (a side-by-side table) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = compare_rows(summaries)
    trimmed = [{k: v for k, v in s.items() if k != "timeline"} for s in summaries]
    (out / "compare.json").write_text(json.dumps({"runs": trimmed}, indent=2))
    header, *body = rows
    lines = [
        f"# Policy comparison: {summaries[0]['scenario']}",
        "",
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * (len(header) - 1) + "|",
        *("| " + " | ".join(row) + " |" for row in body),
        "",
    ]
    (out / "compare.md").write_text("\n".join(lines))
    return rows
