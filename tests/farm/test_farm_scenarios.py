"""Scenario files: the bundled ones load, and bad ones raise ConfigError naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from mockproviders import Farm, FaultProfile, bundled_scenarios, load_scenario, plugin_adapters

BUNDLED = {
    "default",
    "demo",
    "fal-429-storm",
    "fal-down",
    "both-down",
    "openai-rate-limited",
}


def test_bundled_scenarios_load_by_name() -> None:
    """Every bundled scenario loads by its bare name and names only providers the farm serves:
    those an installed plugin registers a farm adapter for."""
    served = {adapter.name for adapter in plugin_adapters()}
    assert {"openai", "fal", "wavespeed", "replicate"} <= served
    assert set(bundled_scenarios()) >= BUNDLED
    for name in bundled_scenarios():
        scenario = load_scenario(name)
        assert scenario.source is not None
        assert scenario.source.endswith(f"{name}.toml")
        assert set(scenario.providers) <= served


def test_demo_scenario_tells_its_story() -> None:
    """demo: fal rate-limited first, then down, then healthy; WaveSpeed down inside fal's
    outage; OpenAI never faults."""
    scenario = load_scenario("demo")
    fal = scenario.providers["fal"]
    early, outage = fal.phases
    assert early.until_s is not None
    assert early.faults.rate_limit is not None
    assert outage.faults.down
    assert outage.at_s == early.until_s
    assert not fal.down
    (brownout,) = scenario.providers["wavespeed"].phases
    assert outage.at_s < brownout.at_s < brownout.until_s < outage.until_s
    assert not scenario.providers["openai"].phases


def test_storm_and_rate_limited_scenarios() -> None:
    """fal-429-storm sends 30% 429s with 2 s; openai-rate-limited has a per-key bucket."""
    storm = load_scenario("fal-429-storm").providers["fal"]
    assert storm.error_rates == {"429": 0.3}
    assert storm.retry_after_s == 2
    assert load_scenario("openai-rate-limited").providers["openai"].rate_limit is not None
    both = load_scenario("both-down").providers
    assert both["fal"].down
    assert both["wavespeed"].down


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('[providers.fal]\nerror_rates = { "429" = 1.5 }\n', "providers.fal.error_rates.429", "1"),
        (
            '[providers.fal]\nerror_rates = { "418" = 0.1 }\n',
            "providers.fal.error_rates.418",
            "'429'",
        ),
        (
            '[providers.fal]\nerror_rates = { "429" = 0.7, "500" = 0.7 }\n',
            "providers.fal.error_rates",
            "more than 1",
        ),
        ("[providers.fal]\ndwon = true\n", "providers.fal.dwon", "Extra inputs"),
        (
            '[providers.fal]\nlatency_ms = { dist = "lognormal", p50 = 10 }\n',
            "providers.fal.latency_ms",
            "p95",
        ),
        (
            "[[providers.wavespeed.phases]]\nat_s = 5\nuntil_s = 2\nfaults = { down = true }\n",
            "providers.wavespeed.phases.0",
            "until_s",
        ),
        (
            '[providers.openai]\nrate_limit = { rpm = "lots" }\n',
            "providers.openai.rate_limit.rpm",
            "",
        ),
        ('seed = "x"\n', "seed", "integer"),
    ],
)
def test_bad_scenario_names_file_and_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    """Each invalid field raises ConfigError with the file, the field path and the reason."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML raises ConfigError naming the file."""
    path = _write(tmp_path, "[providers.fal\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)


def test_unknown_scenario_name() -> None:
    """A name that is neither a file nor bundled lists the bundled scenarios."""
    with pytest.raises(ConfigError, match="demo"):
        load_scenario("no-such-scenario")


def test_unknown_provider_is_rejected_by_the_farm(tmp_path: Path) -> None:
    """A scenario naming a provider the farm does not serve fails at Farm(), naming it."""
    path = _write(tmp_path, "[providers.acme]\ndown = true\n")
    with pytest.raises(ConfigError) as caught:
        Farm(path)
    assert (caught.value.file, caught.value.field) == (str(path), "providers.acme")


def test_set_faults_with_bad_mapping_raises_config_error() -> None:
    """Farm.set_faults validates a mapping like a scenario and names the field."""
    farm = Farm()
    with pytest.raises(ConfigError) as caught:
        farm.set_faults("openai", {"retry_after_format": "fortnights"})
    assert caught.value.field == "retry_after_format"
    with pytest.raises(KeyError):
        farm.set_faults("acme", FaultProfile())


def test_http_date_shorthand_and_number_latency() -> None:
    """retry_after_s = "http-date" means 1 s as a date; a bare latency number is fixed."""
    profile = FaultProfile.model_validate({"retry_after_s": "http-date", "latency_ms": 25})
    assert (profile.retry_after_s, profile.retry_after_format) == (1.0, "http-date")
    assert profile.latency_ms is not None
    assert (profile.latency_ms.dist, profile.latency_ms.p50) == ("fixed", 25)
