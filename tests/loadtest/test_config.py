"""The run's config file: valid TOML with the load-test server defaults under the scenario's."""

from __future__ import annotations

import tomllib
from pathlib import Path

from imagerouter.server.settings import load_server_settings
from loadtests.orchestrator import write_config
from loadtests.scenario import load_load_scenario


def test_config_round_trips_and_the_scenario_wins(tmp_path: Path) -> None:
    """launch-week's config parses back to the defaults laid under its own tables, and the
    server accepts it as its settings."""
    scenario = load_load_scenario("launch-week")
    scenario = scenario.model_copy(
        update={"server": {"workers": 64, "rate_limits": {"read": {"burst": 7}}}}
    )
    path = write_config(tmp_path / "imagerouter.toml", scenario)
    data = tomllib.loads(path.read_text())
    assert data["router"] == scenario.router
    assert data["server"]["workers"] == 64
    assert data["server"]["rate_limits"]["read"] == {"rate_per_s": 100_000, "burst": 7}
    assert data["server"]["rate_limits"]["generate"]["burst"] == 100_000
    settings = load_server_settings(path)
    assert settings.workers == 64
    assert settings.rate_limits["read"].burst == 7
