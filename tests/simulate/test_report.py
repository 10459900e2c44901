"""The report of a run: summary.json, summary.md, transitions.csv, PNG charts; comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagerouter.simulate.report import compare_rows, write_compare, write_report
from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import load_spec

PNG = b"\x89PNG\r\n\x1a\n"

OUTAGE = """
    [[providers.fal.phases]]
    at_s = 5
    until_s = 15
    faults = { down = true }
"""


def test_report_has_summary_markdown_transitions_and_charts(
    small_scenario: Any, tmp_path: Path
) -> None:
    """A finished run leaves summary.json (every measure), summary.md, transitions.csv and
    four PNG charts."""
    sim = Simulation(load_spec(small_scenario(extra=OUTAGE)))
    sim.run()
    out = tmp_path / "report"
    summary = write_report(sim, out)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("jobs", "latency", "calls", "retry_after", "breakers", "cost", "instances"):
        assert key in on_disk
    assert on_disk["cost"]["provider_usd"] > 0
    assert on_disk["cost"]["credits_charged"] > 0
    assert set(on_disk["latency"]) == {"total_s", "provider_s", "queueing_s"}
    assert on_disk["timeline"]["instances"]["fal"]["served"]
    assert "| fal |" in (out / "summary.md").read_text()
    rows = (out / "transitions.csv").read_text().splitlines()
    assert rows[0].startswith("at_s,instance,from,to")
    assert len(rows) - 1 == on_disk["breakers"]["transitions"] > 0
    for chart in ("traffic", "shares", "latency", "breakers"):
        assert (out / f"{chart}.png").read_bytes()[:8] == PNG


def test_cost_is_catalog_price_per_image_per_provider(small_scenario: Any) -> None:
    """Provider dollars are the catalog's cost_usd of each serving provider, per image."""
    sim = Simulation(load_spec(small_scenario()))
    sim.run()
    summary = write_report(sim, Path(sim.spec.source).parent / "r", charts=False)
    fal, wavespeed = summary["instances"]["fal"], summary["instances"]["wavespeed"]
    assert fal["cost_usd"] == round(fal["served"] * 0.025, 2)
    assert wavespeed["cost_usd"] == round(wavespeed["served"] * 0.02, 2)
    assert summary["cost"]["credits_charged"] == 6 * summary["jobs"]["completed"]


def test_comparison_table_puts_policies_side_by_side(tmp_path: Path) -> None:
    """The comparison has one column per policy and a row per measure and per share."""
    summaries = []
    for policy, served in (("a", 10), ("b", 30)):
        summaries.append(
            {
                "scenario": "s",
                "policy": policy,
                "jobs": {"arrived": 40, "completed": served},
                "instances": {"fal": {"share": served / 40}},
            }
        )
    rows = compare_rows(summaries)
    assert rows[0] == ["measure", "a", "b"]
    assert ["jobs completed", "10", "30"] in rows
    assert ["share fal", "25.0%", "75.0%"] in rows
    write_compare(summaries, tmp_path)
    text = (tmp_path / "compare.md").read_text()
    assert "| jobs completed | 10 | 30 |" in text
    assert json.loads((tmp_path / "compare.json").read_text())["runs"][1]["policy"] == "b"
