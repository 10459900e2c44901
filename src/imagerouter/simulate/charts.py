"""The report's charts, as PNG files drawn by matplotlib's Agg backend (no display needed).

- ``traffic.png``: jobs arriving, completed, failed and failed while servable per minute;
- ``shares.png``: each provider instance's share of the jobs served, over time;
- ``latency.png``: job latency p50 / p95 / p99 over time;
- ``breakers.png``: per instance, 429s and errors per minute, with the time its breaker spent
  open (red) and half-open (amber) shaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from imagerouter.simulate.metrics import Transition

__all__ = ["write_charts"]

_DPI = 110


def _axis(timeline: dict[str, Any], n: int) -> tuple[np.ndarray, str, float]:
    """Bucket start times in hours (or minutes for short runs), their label, and the unit."""
    bucket = timeline["bucket_s"]
    total = bucket * n
    unit, label = (3600.0, "hours") if total >= 2 * 3600 else (60.0, "minutes")
    return np.arange(n) * bucket / unit, label, unit


def _per_minute(values: Sequence[int], bucket_s: float) -> np.ndarray:
    return np.asarray(values, dtype=float) * (60.0 / bucket_s)


def _traffic(summary: dict[str, Any], out: Path) -> None:
    tl = summary["timeline"]
    x, label, _ = _axis(tl, len(tl["arrivals"]))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(x, _per_minute(tl["arrivals"], tl["bucket_s"]), label="arrived", color="0.4")
    ax.plot(x, _per_minute(tl["completed"], tl["bucket_s"]), label="completed", color="tab:green")
    ax.plot(x, _per_minute(tl["failed"], tl["bucket_s"]), label="failed", color="tab:red")
    ax.plot(
        x,
        _per_minute(tl["failed_while_servable"], tl["bucket_s"]),
        label="failed while servable",
        color="black",
        linestyle=":",
    )
    ax.set(xlabel=label, ylabel="jobs per minute", title=f"Traffic — {summary['policy']}")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "traffic.png", dpi=_DPI)
    plt.close(fig)


def _shares(summary: dict[str, Any], out: Path) -> None:
    tl = summary["timeline"]
    names = list(tl["instances"])
    served = np.array([tl["instances"][n]["served"] for n in names], dtype=float)
    total = served.sum(axis=0)
    shares = np.divide(served, total, out=np.zeros_like(served), where=total > 0)
    x, label, _ = _axis(tl, served.shape[1])
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.stackplot(x, shares * 100, labels=names, alpha=0.85)
    ax.set(
        xlabel=label,
        ylabel="% of jobs served",
        ylim=(0, 100),
        title=f"Share per provider instance — {summary['policy']}",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out / "shares.png", dpi=_DPI)
    plt.close(fig)


def _latency(summary: dict[str, Any], out: Path) -> None:
    tl = summary["timeline"]
    quantiles = tl["latency_s"]
    n = len(quantiles["p50"])
    x, label, _ = _axis(tl, n)
    fig, ax = plt.subplots(figsize=(10, 4))
    for q, color in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        values = np.array([np.nan if v is None else v for v in quantiles[q]], dtype=float)
        ax.plot(x, values, label=q, color=color)
    ax.set(xlabel=label, ylabel="seconds", title=f"Job latency — {summary['policy']}")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=_DPI)
    plt.close(fig)


def _occupancy(
    transitions: Sequence[Transition], name: str, n: int, bucket_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The fraction of each bucket that ``name``'s breaker spent open, and half-open."""
    spent = {"open": np.zeros(n), "half_open": np.zeros(n)}
    state, since = "closed", 0.0

    def add(kind: str, lo: float, hi: float) -> None:
        b = int(lo // bucket_s)
        while lo < hi and b < n:
            edge = min(hi, (b + 1) * bucket_s)
            spent[kind][b] += edge - lo
            lo, b = edge, b + 1

    for t in transitions:
        if t.name != name:
            continue
        if state in spent:
            add(state, since, t.at_s)
        state, since = t.to_state, t.at_s
    if state in spent:
        add(state, since, n * bucket_s)
    return spent["open"] / bucket_s, spent["half_open"] / bucket_s


def _breakers(summary: dict[str, Any], transitions: Sequence[Transition], out: Path) -> None:
    tl = summary["timeline"]
    names = list(tl["instances"])
    n = len(tl["arrivals"])
    x, label, _ = _axis(tl, n)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.8 * len(names) + 1), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=True):
        series = tl["instances"][name]
        ax.plot(x, _per_minute(series["rate_limited"], tl["bucket_s"]), label="429s/min", lw=1)
        errors = np.asarray(series["errors"]) - np.asarray(series["rate_limited"])
        ax.plot(x, _per_minute(errors, tl["bucket_s"]), label="other errors/min", lw=1)
        opened, half = _occupancy(transitions, name, n, tl["bucket_s"])
        shade = ax.twinx()
        shade.fill_between(x, opened, step="post", color="red", alpha=0.25, lw=0)
        shade.fill_between(x, opened + half, opened, step="post", color="orange", alpha=0.3, lw=0)
        shade.set(ylim=(0, 1), yticks=[])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[0].set_title(
        f"Errors per minute; breaker open (red) / half-open (amber) — {summary['policy']}"
    )
    axes[-1].set_xlabel(label)
    fig.tight_layout()
    fig.savefig(out / "breakers.png", dpi=_DPI)
    plt.close(fig)


def write_charts(summary: dict[str, Any], transitions: Sequence[Transition], out: Path) -> None:
    """Draw the four charts of a run's ``summary`` into ``out``."""
    _traffic(summary, out)
    _shares(summary, out)
    _latency(summary, out)
    _breakers(summary, transitions, out)
