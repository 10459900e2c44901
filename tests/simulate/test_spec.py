"""Simulation scenarios and policies: loading, validation, merging."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from imagerouter.simulate.spec import apply_policy, bundled_simulations, deep_merge, load_spec
from imagerouter.simulate.world import router_config

from .conftest import WriteFile


def test_bundled_launch_week_names_its_farm_scenario_and_accounts() -> None:
    """The bundled launch-week runs against the farm's launch-week file, over four accounts."""
    assert "launch-week" in bundled_simulations()
    spec = load_spec("launch-week")
    assert spec.farm.source is not None
    assert spec.farm.source.endswith("launch-week.toml")
    assert "mockproviders" in spec.farm.source
    assert set(spec.settings.accounts) == {"fal-main", "fal-team-b", "wavespeed", "openai"}
    assert spec.settings.peak_per_min == 20000
    assert spec.settings.hours == 24
    providers = router_config(spec)["providers"]
    assert providers["fal-team-b"] == {"plugin": "fal", "api_key": "fal-team-b"}


def test_a_plain_farm_scenario_runs_with_default_traffic_and_accounts() -> None:
    """A farm scenario name alone is a simulation: steady traffic, one account per provider."""
    spec = load_spec("fal-429-storm")
    assert spec.settings.shape == "steady"
    assert spec.farm.providers["fal"].error_rates == {"429": 0.3}
    providers = router_config(spec)["providers"]
    assert set(providers) == {"fal", "wavespeed", "openai"}
    assert providers["fal"]["api_key"] == "sim-fal"
    # a provider the catalog lists as optional (Replicate) gets its account when the farm
    # scenario models it: left out, its share of the mix failed on other providers' waits
    modeled = load_spec("loadtest")
    assert "replicate" in modeled.farm.providers
    assert set(router_config(modeled)["providers"]) == {"fal", "wavespeed", "openai", "replicate"}


def test_inline_farm_tables_make_one_self_contained_file(write_toml: WriteFile) -> None:
    """Without farm_scenario, the rest of the file is the farm scenario itself."""
    path = write_toml(
        "inline.toml",
        """
        seed = 9
        [simulation]
        peak_per_min = 60
        [providers.fal]
        down = true
        """,
    )
    spec = load_spec(path)
    assert spec.farm.seed == 9
    assert spec.farm.providers["fal"].down
    assert spec.name == "inline"


def test_bad_simulation_field_names_the_file_and_field(write_toml: WriteFile) -> None:
    """A wrong value is a ConfigError naming the file and the field path."""
    path = write_toml("bad.toml", "[simulation]\npeak_per_min = -5\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.field == "simulation.peak_per_min"
    assert info.value.file == str(path)


@pytest.mark.parametrize(
    ("table", "field", "reason"),
    [
        ('shape = "sawtooth"', "simulation.shape", "unknown traffic shape 'sawtooth'"),
        ('models = { "flux-deev" = 1 }', "simulation.models.flux-deev", "unknown model"),
        (
            '[simulation.accounts.ws]\nplugin = "wavespped"',
            "simulation.accounts.ws.plugin",
            "no provider plugin 'wavespped' is installed",
        ),
    ],
)
def test_names_the_rest_of_the_system_knows_are_checked_in_the_file(
    write_toml: WriteFile, table: str, field: str, reason: str
) -> None:
    """A shape, a model or an account's plugin that does not exist is named in the file as
    it is read (the router found the plugin later, as '<code>: providers.ws.plugin')."""
    path = write_toml("bad.toml", f"[simulation]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert (info.value.file, info.value.field) == (str(path), field)
    assert reason in str(info.value)


def test_farm_scenario_reference_excludes_inline_farm_tables(write_toml: WriteFile) -> None:
    """A file that names its farm scenario may not also carry farm tables."""
    path = write_toml(
        "mixed.toml", '[simulation]\nfarm_scenario = "demo"\n[providers.fal]\ndown = true\n'
    )
    with pytest.raises(ConfigError, match="only the \\[simulation\\] table"):
        load_spec(path)


def test_unknown_scenario_lists_the_bundled_ones() -> None:
    """An unknown name says so and lists what ships."""
    with pytest.raises(ConfigError, match="launch-week"):
        load_spec("no-such-scenario")


def test_policy_is_deep_merged_over_the_scenario_config(write_toml: WriteFile) -> None:
    """A policy file changes only the fields it sets, and names the run."""
    policy = write_toml(
        "tight.toml",
        """
        [router.breaker]
        open_base_s = 9
        [providers.fal-main]
        max_concurrency = 50
        """,
    )
    spec = apply_policy(load_spec("launch-week"), policy)
    assert spec.policy == "tight"
    assert spec.config["router"] == {"deadline_s": 300, "breaker": {"open_base_s": 9}}
    providers = router_config(spec)["providers"]
    assert providers["fal-main"]["max_concurrency"] == 50
    assert providers["fal-main"]["api_key"] == "fal-enterprise"


def test_policy_can_change_the_catalog_inline(write_toml: WriteFile) -> None:
    """An inline [catalog] table replaces models by name over the shipped catalog."""
    policy = write_toml(
        "hedge.toml",
        """
        [catalog.models."flux-dev"]
        policy = "weighted"
        hedge = true
        credits = { low = 6, standard = 6, high = 6 }
        providers = [
            { provider = "fal", model = "fal-ai/flux/dev", cost_usd = 0.025 },
            { provider = "wavespeed", model = "wavespeed-ai/flux-dev", cost_usd = 0.02 },
        ]
        """,
    )
    spec = apply_policy(load_spec("fal-down"), policy)
    assert spec.catalog is not None
    model = spec.catalog.resolve("flux-dev")
    assert model.hedge
    assert model.policy == "weighted"
    assert spec.catalog.resolve("gpt-image-2").providers[0].provider == "fal"


def test_overrides_change_hours_seed_and_rate() -> None:
    """--hours, --seed and --rate override the scenario's values, and are checked."""
    spec = load_spec("launch-week").with_overrides(hours=0.5, seed=3, peak_per_min=100)
    assert (spec.settings.hours, spec.settings.seed, spec.settings.peak_per_min) == (0.5, 3, 100)
    assert spec.settings.accounts["fal-team-b"].faults is not None
    with pytest.raises(ConfigError, match="hours"):
        spec.with_overrides(hours=0)


def test_deep_merge_merges_tables_and_replaces_values() -> None:
    """Tables merge key by key; lists and scalars replace; the inputs are not changed."""
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [2]}, "e": 3})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 3}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}


def test_policy_catalog_file_resolves_next_to_the_policy(
    write_toml: WriteFile, tmp_path: Path
) -> None:
    """``catalog = "file.toml"`` in a policy is read relative to the policy file."""
    write_toml(
        "cat.toml",
        """
        [models."flux-dev"]
        policy = "cost"
        credits = { low = 1, standard = 1, high = 1 }
        providers = [{ provider = "wavespeed", model = "w", cost_usd = 0.01 }]
        """,
    )
    policy = write_toml("cheap.toml", 'catalog = "cat.toml"\n')
    spec = apply_policy(load_spec("default"), policy)
    assert spec.catalog is not None
    assert spec.catalog.resolve("flux-dev").policy == "cost"


def test_a_policys_mistake_names_the_policy_file(write_toml: WriteFile) -> None:
    """A typo in a policy is found when the policy is read, and named in its file, not in
    the router built from the merged config later (where no file is known)."""
    policy = write_toml("bad-policy.toml", "[router.breaker]\nwindow_secs = 30\n")
    with pytest.raises(ConfigError) as caught:
        apply_policy(load_spec("brownout"), policy)
    assert str(caught.value) == f"{policy}: router.breaker.window_secs: unknown field"
