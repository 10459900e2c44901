"""The report folder of a run: ``summary.json``, ``summary.md`` and PNG charts.

Charts (matplotlib, Agg; seconds since Locust started on the x axis, each farm phase shaded
and named): ``throughput.png`` (jobs submitted / completed / failed a second, and Locust users),
``latency.png`` (end-to-end and submit percentiles over time) and ``providers.png`` (which
provider served the completed jobs, the farm's answers per provider, and breaker-open spans).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.bench.common import percentile
from loadtests.summary import RunData, throughput_series

__all__ = ["main", "render_markdown", "write_charts", "write_report"]

PHASE_COLOURS = ("#f4a261", "#e76f51", "#2a9d8f", "#8ab17d", "#b56576", "#6d597a")
PROVIDER_COLOURS = {
    "fal": "#264653",
    "wavespeed": "#e9c46a",
    "openai": "#2a9d8f",
    "replicate": "#b56576",
}


def write_report(out: Path, data: RunData, summary: dict[str, Any]) -> None:
    """Write ``summary.json``, ``summary.md`` and the charts into ``out``."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    charts = write_charts(out, data)
    (out / "summary.md").write_text(render_markdown(summary, charts))


# --- markdown ------------------------------------------------------------------------------------


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _pct_row(name: str, figures: dict[str, Any], unit: str) -> list[Any]:
    return [
        name,
        figures.get("count"),
        *(_fmt(figures.get(k), unit) for k in ("p50", "p95", "p99", "max")),
    ]


def _locust_processes(workers: int) -> str:
    return "one Locust process" if not workers else f"a Locust master and {workers} workers"


def _headline(s: dict[str, Any]) -> list[str]:
    sc = s["scenario"]
    verdict = "all checks passed" if s["ok"] else "SOME CHECKS FAILED"
    return [
        f"# Load test `{sc['name']}`: {verdict}",
        "",
        sc["description"],
        "",
        f"{sc['users']} Locust users at peak ({sc['jobs_per_user_s']} jobs/s each, shape "
        f"`{sc['shape']}`), {sc['duration_s']:.0f} s of traffic "
        f"(+{s['run']['drain_s']:.0f} s drain), {_locust_processes(sc['locust_workers'])}.",
        "",
        "## Checks",
        "",
        *[f"- {'✅' if c['ok'] else '❌'} **{c['name']}**: {c['detail']}" for c in s["checks"]],
    ]


def _jobs_section(s: dict[str, Any]) -> list[str]:
    jobs = s["jobs"]
    fraction = jobs["completed_fraction"]
    header = [
        "submitted",
        "completed",
        "failed",
        "canceled",
        "not final",
        "lost",
        "completed (of not canceled)",
    ]
    row = [
        jobs["submitted"],
        jobs["completed"],
        jobs["failed"],
        jobs["canceled"],
        jobs["not_final"],
        len(jobs["lost"]),
        "–" if fraction is None else f"{100 * fraction:.1f} %",
    ]
    retries, cancels = jobs["idempotent_retries"], jobs["cancel_requests"]
    return [
        "## Jobs (as the server lists them)",
        "",
        *_table(header, [row]),
        "",
        f"Failure codes: {jobs['failure_codes'] or '–'}. Idempotent client retries: "
        f"{retries['replayed']} of {retries['sent']} replayed. Cancel requests: "
        f"{cancels['sent']} ({cancels['canceled']} canceled, {cancels['already_final']} "
        f"already final). Refused submits: {jobs['client_refused'] or '–'}.",
        "",
        _servable_line(jobs.get("failed_while_servable") or {}),
    ]


def _servable_line(servable: dict[str, Any]) -> str:
    count = servable.get("count", 0)
    line = f"**Failed while servable** (a candidate could still have served the job): {count}"
    if not count:
        return line + "."
    by_reason = ", ".join(f"{k} {v}" for k, v in servable["by_reason"].items())
    by_provider = ", ".join(f"{k} {v}" for k, v in servable["by_provider"].items())
    return f"{line}; by reason: {by_reason}; servable providers: {by_provider}."


def _phases_section(s: dict[str, Any]) -> list[str]:
    rows = [
        [
            p["name"],
            ", ".join(p["providers"]),
            p["start_s"],
            f"{p['end_s']:g}" + (" (+ drain)" if p["holds_through_drain"] else ""),
            _phase_calls(p.get("calls")),
        ]
        for p in s["scenario"]["phases"]
    ]
    headers = ["phase", "providers", "from s", "to s", "calls to them meanwhile"]
    return ["## Farm phases", "", *_table(headers, rows or [["none", "", "", "", ""]])]


def _phase_calls(calls: int | None) -> str:
    """A phase's calls, and what none of them means."""
    if calls is None:  # a summary written before phases counted their calls
        return "-"
    return f"{calls:,}" if calls else "0: no traffic reached it, so it tested nothing"


def _providers_section(s: dict[str, Any]) -> list[str]:
    p = s["providers"]
    rows = [
        [
            name,
            p["served"].get(name, 0),
            calls,
            p["skipped"].get(name, 0),
            ", ".join(f"{k} {v}" for k, v in p["errors"].get(name, {}).items()) or "–",
        ]
        for name, calls in p["calls"].items()
    ]
    failovers = ", ".join(f"{pair}: {n}" for pair, n in p["failovers"].items()) or "none"
    retries = ", ".join(f"{name}: {n}" for name, n in p["retries"].items()) or "none"
    return [
        "## Providers",
        "",
        *_table(["provider", "served", "calls", "skipped", "errors"], rows),
        "",
        f"**Failovers** ({p['failovers_total']}): {failovers}. "
        f"Retries on the same provider: {retries}.",
    ]


def _span(span: dict[str, Any]) -> str:
    if span["closed_s"] is None:
        return f"{span['opened_s']:.1f} → still open"
    return f"{span['opened_s']:.1f} → {span['closed_s']:.1f} ({span['open_for_s']:.1f} s)"


def _breakers_section(s: dict[str, Any]) -> list[str]:
    rows = [
        [name, b["trips"], "; ".join(_span(sp) for sp in b["open_spans"]) or "–"]
        for name, b in s["breakers"]["by_provider"].items()
    ]
    recovery = [
        f"- after **{r['phase']}** ended at {r['ended_s']:.1f} s, {r['provider']} "
        + (
            "served nothing more"
            if r["serving_again_after_s"] is None
            else f"served again {r['serving_again_after_s']:.2f} s later"
        )
        for r in s["breakers"]["recovery"]
    ]
    return [
        "## Breakers (sampled every 0.5 s from GET /v1/providers)",
        "",
        *_table(["provider", "trips", "open spans (s since start: open → closed)"], rows),
        "",
        *recovery,
    ]


def _retry_after_section(s: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            v["answered_429"],
            v["retry_after_issued"],
            v["inside_retry_after"],
            v["inside_retry_after_raw"],
        ]
        for name, v in s["retry_after"]["by_provider"].items()
    ]
    header = ["provider", "429s", "Retry-After issued", "inside a window", "raw (no grace)"]
    return ["## Retry-After compliance (the farm's counters)", "", *_table(header, rows)]


def _latency_section(s: dict[str, Any]) -> list[str]:
    lat, hooks = s["latency"], s["webhooks"]
    rows = [
        _pct_row("submit (client, ms)", lat["submit_ms"], " ms"),
        *[
            _pct_row(f"end to end, {status} (server, s)", figures, " s")
            for status, figures in lat["end_to_end_s"].items()
        ],
        _pct_row("queue wait (server, s)", lat["queue_wait_s"], " s"),
        _pct_row("end to end as clients saw it (s)", lat["client_observed_end_to_end_s"], " s"),
    ]
    if hooks["latency_ms"]["count"]:
        rows.append(_pct_row("webhook after the job ended (ms)", hooks["latency_ms"], " ms"))
    return ["## Latency", "", *_table(["what", "count", "p50", "p95", "p99", "max"], rows)]


def _webhooks_section(s: dict[str, Any]) -> list[str]:
    hooks = s["webhooks"]
    if not hooks["available"]:
        return ["## Webhooks", "", "This server does not deliver webhooks: those clients polled."]
    return [
        "## Webhooks",
        "",
        f"{hooks['delivered']} of {hooks['expected']} delivered, {hooks['redelivered']} "
        f"redelivered, {hooks['invalid_signatures']} bad signatures, {hooks['unverified']} "
        "unverified (checked with `imagerouter.client.verify_webhook`).",
    ]


def _credits_section(s: dict[str, Any]) -> list[str]:
    c = s["credits"]
    header = ["granted", "charged", "refunded", "debits", "refunds", "balance", "balanced"]
    row = [
        c["granted"],
        c["charged"],
        c["refunded"],
        c["debits"],
        c["refunds"],
        c["balance"],
        "yes" if c["balanced"] else "NO",
    ]
    return [
        "## Credits (the server's ledger)",
        "",
        *_table(header, [row]),
        *([""] + [f"- {problem}" for problem in c["problems"]] if c["problems"] else []),
    ]


def render_markdown(s: dict[str, Any], charts: Sequence[str] = ()) -> str:
    """``summary.md``: the headline and checks, then one section per subject."""
    sections = [
        _headline,
        _jobs_section,
        _phases_section,
        _providers_section,
        _breakers_section,
        _retry_after_section,
        _latency_section,
        _webhooks_section,
        _credits_section,
    ]
    lines: list[str] = []
    for section in sections:
        lines += [*section(s), ""]
    if charts:
        lines += ["## Charts", "", *[f"![{Path(c).stem}]({c})" for c in charts], ""]
    lines += [
        "Locust's own report: `locust/report.html` and `locust/locust_*.csv`. The raw record "
        "(jobs with attempts, ledger, farm counters, samples, webhooks): `raw/`; "
        "`python -m loadtests.report FOLDER` redraws this report from it.",
        "",
    ]
    return "\n".join(lines)


# --- charts --------------------------------------------------------------------------------------


def _mark_phases(axes: Any, spans: Sequence[tuple[str, float, float]], label: bool) -> None:
    for index, (name, start, end) in enumerate(spans):
        colour = PHASE_COLOURS[index % len(PHASE_COLOURS)]
        axes.axvspan(start, end, color=colour, alpha=0.15, lw=0)
        if label:
            axes.text(
                start,
                0.99 - 0.07 * (index % 3),
                f" {name}",
                fontsize=7,
                va="top",
                ha="left",
                color=colour,
                transform=axes.get_xaxis_transform(),
            )


def _locust_users(data: RunData) -> tuple[list[float], list[float]]:
    path = (data.locust_dir or Path("/nonexistent")) / "locust_stats_history.csv"
    xs, ys = [], []
    if path.is_file():
        import csv

        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    try:
                        xs.append(float(row["Timestamp"]) - data.t0)
                        ys.append(float(row["User Count"]))
                    except (KeyError, ValueError):
                        continue
    return xs, ys


def _binned_percentiles(
    points: Sequence[tuple[float, float]], bin_s: float, end: float, q: float
) -> tuple[list[float], list[float]]:
    bins: dict[int, list[float]] = {}
    for t, value in points:
        if 0 <= t <= end:
            bins.setdefault(int(t // bin_s), []).append(value)
    keys = sorted(bins)
    return [(k + 0.5) * bin_s for k in keys], [percentile(bins[k], q) for k in keys]


def _errors(by_status: dict[str, int]) -> int:
    """Answers that were not 2xx (429s, 5xx, timeouts, resets)."""
    return sum(n for status, n in by_status.items() if not status.startswith("2"))


def _farm_rates(
    samples: Sequence[dict[str, Any]], provider: str, bin_s: float, end: float
) -> tuple[list[float], list[float], list[float]]:
    """Generation calls and error answers a second for ``provider``, binned from the samples."""
    points = []
    for sample in samples:
        entry = sample.get("farm", {}).get("providers", {}).get(provider)
        if entry is not None:
            points.append(
                (sample["t"], entry.get("generations", 0), _errors(entry.get("by_status", {})))
            )
    xs, calls, errors = [], [], []
    last: tuple[float, int, int] | None = None
    for t, gens, errs in points:
        if last is None:
            last = (t, gens, errs)
            continue
        dt = t - last[0]
        if dt > 0 and (dt >= bin_s or t >= end):
            xs.append((t + last[0]) / 2)
            calls.append(max(0, gens - last[1]) / dt)
            errors.append(max(0, errs - last[2]) / dt)
            last = (t, gens, errs)
    return xs, calls, errors


def write_charts(out: Path, data: RunData) -> list[str]:
    """Write the three PNG charts; their file names (relative to ``out``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = data.t0
    end = max(1.0, data.drain_end - t0)
    spans = data.scenario.phase_spans()
    spans = [(n, s, e if e < data.scenario.duration_s else end) for n, s, e in spans]
    bin_s = max(1.0, round(end / 60))
    names: list[str] = []

    # Throughput: jobs a second, and users.
    fig, ax = plt.subplots(figsize=(11, 4.2))
    xs = [(i + 0.5) * bin_s for i in range(math.ceil(end / bin_s))]
    created = [j["created_at"] for j in data.jobs]
    series = {"submitted": created}
    for status in ("completed", "failed", "canceled"):
        series[status] = [
            j["finished_at"] for j in data.jobs if j["status"] == status and j.get("finished_at")
        ]
    styles = {
        "submitted": "#264653",
        "completed": "#2a9d8f",
        "failed": "#e63946",
        "canceled": "#999999",
    }
    for name, values in series.items():
        if values or name in ("submitted", "completed"):
            counts = throughput_series(values, t0, bin_s, end)
            ax.plot(
                xs[: len(counts)],
                [c / bin_s for c in counts],
                label=name,
                color=styles[name],
                lw=1.4,
            )
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("jobs / s")
    ax.axvline(data.traffic_end - t0, color="#555", ls=":", lw=1)
    users_x, users_y = _locust_users(data)
    if users_x:
        twin = ax.twinx()
        twin.plot(users_x, users_y, color="#6d597a", lw=1, ls="--", label="Locust users")
        twin.set_ylabel("users")
        twin.legend(loc="upper right", fontsize=8)
    _mark_phases(ax, spans, label=True)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{data.scenario.name}: throughput (dotted line: traffic stops, drain follows)")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    names.append("throughput.png")

    # Latency: end to end (server) and submit (clients), p50 and p95.
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    lat_bin = max(2.0, round(end / 40))
    for status, colour in (("completed", "#2a9d8f"), ("failed", "#e63946")):
        points = [
            (j["created_at"] - t0, j["finished_at"] - j["created_at"])
            for j in data.jobs
            if j["status"] == status and j.get("finished_at")
        ]
        for q, style in ((50, "-"), (95, "--")):
            px, py = _binned_percentiles(points, lat_bin, end, q)
            if px:
                top.plot(px, py, style, color=colour, label=f"{status} p{q}", lw=1.3)
    top.set_ylabel("end to end, s (by submit time)")
    top.legend(fontsize=8, loc="upper left")
    submits = [
        (r["t"] - t0, r["ms"]) for r in data.records if r.get("e") == "submit" and r.get("id")
    ]
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        px, py = _binned_percentiles(submits, lat_bin, end, q)
        if px:
            bottom.plot(px, py, style, color="#264653", label=f"submit p{q}", lw=1.3)
    bottom.set_ylabel("submit, ms")
    bottom.set_xlabel("seconds since the start")
    bottom.legend(fontsize=8, loc="upper left")
    for axes in (top, bottom):
        _mark_phases(axes, spans, label=axes is top)
    top.set_title(f"{data.scenario.name}: latency")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    names.append("latency.png")

    # Providers: share of completed jobs, farm answers, breaker spans.
    providers = sorted(
        {
            j["result"]["provider"]
            for j in data.jobs
            if j["status"] == "completed" and j.get("result")
        }
        | set(data.farm_stats.get("providers", {}))
    )
    fig, (share_ax, farm_ax) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    share_bin = max(2.0, round(end / 60))
    by_provider = {
        p: throughput_series(
            [
                j["finished_at"]
                for j in data.jobs
                if j["status"] == "completed" and (j.get("result") or {}).get("provider") == p
            ],
            t0,
            share_bin,
            end,
        )
        for p in providers
    }
    bins = len(next(iter(by_provider.values()), []))
    totals = [sum(by_provider[p][i] for p in providers) for i in range(bins)]
    sx = [(i + 0.5) * share_bin for i in range(bins)]
    stacks = [
        [by_provider[p][i] / totals[i] if totals[i] else 0.0 for i in range(bins)]
        for p in providers
    ]
    if providers and bins:
        share_ax.stackplot(
            sx,
            stacks,
            labels=providers,
            colors=[PROVIDER_COLOURS.get(p, "#888") for p in providers],
            alpha=0.85,
        )
    share_ax.set_ylim(0, 1)
    share_ax.set_ylabel("share of completed jobs")
    share_ax.legend(fontsize=8, loc="lower left")
    samples = data.samples
    for p in providers:
        colour = PROVIDER_COLOURS.get(p, "#888")
        fx, calls, errors = _farm_rates(samples, p, share_bin, end)
        if fx:
            farm_ax.plot(fx, calls, color=colour, lw=1.2, label=f"{p} generation calls")
            farm_ax.plot(fx, errors, color=colour, lw=1.2, ls=":", label=f"{p} errors")
        opened = None
        for sample in samples:
            state = sample.get("breakers", {}).get(p)
            if state and state != "closed" and opened is None:
                opened = sample["t"]
            elif state == "closed" and opened is not None:
                farm_ax.axvspan(opened, sample["t"], ymin=0.0, ymax=0.04, color=colour)
                opened = None
        if opened is not None:
            farm_ax.axvspan(opened, end, ymin=0.0, ymax=0.04, color=colour)
    farm_ax.set_ylabel("farm, per s (bars: breaker open)")
    farm_ax.set_xlabel("seconds since the start")
    farm_ax.legend(fontsize=7, loc="upper right", ncol=3)
    for axes in (share_ax, farm_ax):
        _mark_phases(axes, spans, label=axes is share_ax)
    share_ax.set_title(f"{data.scenario.name}: providers")
    fig.tight_layout()
    fig.savefig(out / "providers.png", dpi=110)
    plt.close(fig)
    names.append("providers.png")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m loadtests.report OUT``: redo a run's summary and charts from ``OUT/raw``."""
    import sys

    from loadtests.summary import load_run, summarize

    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m loadtests.report REPORT_FOLDER (a loadtest --out folder)"
    if len(args) != 1 or args[0] in ("-h", "--help"):
        raise SystemExit(usage)
    out = Path(args[0])
    if not (out / "raw" / "run.json").is_file():
        raise SystemExit(f"{out}: not a load test's report folder (no raw/run.json)\n{usage}")
    data = load_run(out)
    summary = summarize(data)
    write_report(out, data, summary)
    print(f"{out / 'summary.md'}: {'all checks passed' if summary['ok'] else 'checks FAILED'}")


if __name__ == "__main__":
    main()
