"""Scenario files: one resolver for every tool, file names that say which tool reads them, and
one table (docs/scenarios.md) that lists them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.bundled import Bundled, resolve_bundled
from imagerouter.errors import ConfigError
from imagerouter.simulate.spec import SIMULATIONS, load_spec
from loadtests.orchestrator import _farm_argument
from loadtests.scenario import LOAD_SCENARIOS, load_load_scenario
from mockproviders.scenario import FARM_SCENARIOS, load_scenario

ROOT = Path(__file__).resolve().parents[2]
KINDS = (FARM_SCENARIOS, SIMULATIONS, LOAD_SCENARIOS)


def test_the_same_name_means_each_tools_own_file() -> None:
    """`launch-week` is three files; each tool resolves the name to its own."""
    farm = load_scenario("launch-week")
    simulation = load_spec("launch-week")
    load_test = load_load_scenario("launch-week")
    assert farm.source == str(FARM_SCENARIOS.path("launch-week"))
    assert simulation.source == str(SIMULATIONS.path("launch-week"))
    assert load_test.source == str(LOAD_SCENARIOS.path("launch-week"))
    assert simulation.farm.source == farm.source  # the simulation runs over the farm's file
    assert simulation.name == load_test.name == "launch-week"  # report folders keep the name


def test_every_bundled_file_carries_its_tools_suffix() -> None:
    """No bare `.toml` sits among the simulator's or the load tests' files, so a file's name
    alone says which tool reads it."""
    for kind in (SIMULATIONS, LOAD_SCENARIOS):
        files = sorted(path.name for path in kind.directory.glob("*.toml"))
        assert files, kind.what
        assert all(name.endswith(kind.suffix) for name in files), files


def test_names_resolve_with_or_without_the_suffix(tmp_path: Path) -> None:
    """A bare name, the name with `.toml`, or with the tool's suffix find the same file; a
    user's file keeps its name without the suffix."""
    for reference in ("steady", "steady.toml", "steady.loadtest.toml"):
        found = resolve_bundled(reference, LOAD_SCENARIOS)
        assert (found.path, found.name, found.bundled) == (
            LOAD_SCENARIOS.path("steady"),
            "steady",
            True,
        )
    mine = tmp_path / "mine.loadtest.toml"
    mine.write_text("")
    assert resolve_bundled(mine, LOAD_SCENARIOS).name == "mine"


def test_a_referenced_file_is_looked_for_beside_the_file_that_names_it(tmp_path: Path) -> None:
    """`farm_scenario = "faults.toml"` means the file beside the simulation or load-test
    scenario, wherever the command runs; a bare name still means a bundled one."""
    (tmp_path / "faults.toml").write_text("[providers.fal]\ndown = true\n")
    simulation = tmp_path / "run.simulate.toml"
    simulation.write_text('[simulation]\nfarm_scenario = "faults.toml"\n')
    spec = load_spec(simulation)
    assert spec.name == "run"
    assert spec.farm.providers["fal"].down
    load_test = tmp_path / "run.loadtest.toml"
    load_test.write_text('farm_scenario = "faults.toml"\n')
    assert _farm_argument(load_load_scenario(load_test)) == str(tmp_path / "faults.toml")
    bundled_base = tmp_path / "base.loadtest.toml"
    bundled_base.write_text('farm = "loadtest"\n')  # the older spelling is still read
    assert _farm_argument(load_load_scenario(bundled_base)) == "loadtest"


def test_an_unknown_name_lists_what_each_tool_ships() -> None:
    """The error names the kinds looked through and every bundled name among them."""
    with pytest.raises(ConfigError) as caught:
        resolve_bundled("no-such", SIMULATIONS, FARM_SCENARIOS)
    message = str(caught.value)
    assert "simulation scenario or farm scenario" in message
    assert "demo" in message
    assert "launch-week" in message
    with pytest.raises(ConfigError):
        resolve_bundled("sub/launch-week", Bundled("x", FARM_SCENARIOS.directory))


def test_the_table_lists_every_bundled_scenario() -> None:
    """docs/scenarios.md names each kind's directory and suffix and every bundled name."""
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    for kind in KINDS:
        directory = kind.directory.relative_to(ROOT).as_posix()
        assert f"`{directory}/<name>{kind.suffix}`" in doc, kind.what
        row = next(line for line in doc.splitlines() if line.startswith(f"| {kind.what} |"))
        assert row == f"| {kind.what} | " + ", ".join(f"`{n}`" for n in kind.names()) + " |"
