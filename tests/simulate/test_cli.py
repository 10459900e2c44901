"""``imagerouter simulate``: one run, a comparison of policies, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from imagerouter.cli import main

from .conftest import WriteFile


def test_simulate_writes_a_report(small_scenario: Any, tmp_path: Path) -> None:
    """``simulate SCENARIO --hours --out`` runs and leaves its report there."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["simulate", str(small_scenario()), "--hours", "0.005", "--out", str(out), "--no-charts"],
    )
    assert result.exit_code == 0, result.output
    assert "jobs arrived" in result.output
    assert "simulated jobs per wall-clock minute" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hours"] == 0.005
    assert summary["policy"] == "base"
    assert (out / "summary.md").is_file()


def test_simulate_compare_runs_each_policy_side_by_side(
    small_scenario: Any, write_toml: WriteFile, tmp_path: Path
) -> None:
    """``--compare a.toml b.toml`` writes one report per policy and a comparison table."""
    a = write_toml("loose.toml", "[router.breaker]\nconsecutive_failures = 20\n")
    b = write_toml("tight.toml", "[router.breaker]\nconsecutive_failures = 2\n")
    out = tmp_path / "cmp"
    args = ["simulate", str(small_scenario()), "--hours", "0.003", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--no-charts", "--compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert (out / "loose" / "summary.json").is_file()
    assert (out / "tight" / "summary.json").is_file()
    table = (out / "compare.md").read_text()
    assert "| measure | loose | tight |" in table
    assert "breaker trips" in table


def test_simulate_errors_are_clear_and_exit_2(tmp_path: Path) -> None:
    """An unknown scenario, or policy files without --compare, exit 2 with the reason."""
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", "no-such-scenario"])
    assert result.exit_code == 2
    assert "no bundled scenario" in result.output
    policy = tmp_path / "p.toml"
    policy.write_text("")
    result = runner.invoke(main, ["simulate", "default", str(policy)])
    assert result.exit_code == 2
    assert "--compare" in result.output


def test_a_run_shorter_than_its_faults_says_which_it_did_not_reach(
    small_scenario: Any, tmp_path: Path
) -> None:
    """A fal outage at 30 s of the scenario's clock and another at 1 h: a 36 s run reaches the
    first only. The command warns, and the report says so in JSON and in its summary.md, so
    that a clean run is not read as the faults having been met."""
    phases = (
        "\n[[providers.fal.phases]]\nat_s = 30\nuntil_s = 33\nfaults = { down = true }\n"
        "\n[[providers.fal.phases]]\nat_s = 3600\nfaults = { down = true }\n"
    )
    out = tmp_path / "out"
    args = ["simulate", str(small_scenario(fal=phases)), "--hours", "0.01", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--no-charts"])
    assert result.exit_code == 0, result.output
    assert "Fault phases: 1 of 2 reached. Not reached in these 0.01 h" in result.output
    assert "fal at 1 h" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [(p["at_s"], p["reached"]) for p in summary["phases"]] == [(30.0, True), (3600.0, False)]
    assert "**Not reached**" in (out / "summary.md").read_text()
