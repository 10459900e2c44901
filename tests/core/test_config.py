"""Bad configuration fails at start, naming the file, the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter import ConfigError, Router, load_catalog, load_settings

KEYS = {"FAL_KEY": "k1", "WAVESPEED_API_KEY": "k2", "OPENAI_API_KEY": "k3"}


def test_unknown_provider_in_catalog_names_file_field_and_known_ones(tmp_path: Path) -> None:
    """A catalog entry naming a provider nobody registered is rejected at start."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        "[models.mine]\ncredits = {low = 1, standard = 1, high = 1}\n"
        '[[models.mine.providers]]\nprovider = "fall"\nmodel = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        Router.from_config({"catalog": str(catalog)}, environ=KEYS)
    error = caught.value
    assert error.file == str(catalog)
    assert error.field == "models.mine.providers[0].provider"
    assert "unknown provider 'fall'" in error.reason
    assert "wavespeed" in error.reason


def test_missing_key_for_a_real_provider_says_how_to_fix(tmp_path: Path) -> None:
    """A provider the catalog needs, with no key in config or environment, fails at start."""
    config = tmp_path / "imagerouter.toml"
    config.write_text("[router]\ndeadline_s = 30\n")
    with pytest.raises(ConfigError) as caught:
        Router.from_config(config, environ={"WAVESPEED_API_KEY": "k", "OPENAI_API_KEY": "k"})
    error = caught.value
    assert (error.file, error.field) == (str(config), "providers.fal.api_key")
    assert "FAL_KEY" in str(error)


def test_every_provider_that_cannot_start_is_named_at_once(tmp_path: Path) -> None:
    """Three keys missing are one error naming the three, not three runs of check-config."""
    config = tmp_path / "imagerouter.toml"
    config.write_text("[router]\ndeadline_s = 30\n")
    with pytest.raises(ConfigError) as caught:
        Router.from_config(config, environ={})
    message = str(caught.value)
    assert message.startswith(f"{config}: 3 providers cannot start: ")
    for field, variable in (
        ("fal", "FAL_KEY"),
        ("wavespeed", "WAVESPEED_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
    ):
        assert f"providers.{field}.api_key: missing API key: set ${variable}" in message


def test_key_from_environment_or_config_builds_every_instance() -> None:
    """With keys present the router builds one instance per provider the catalog names."""
    router = Router.from_config({"providers": {"openai": {"api_key": "sk-x"}}}, environ=KEYS)
    assert set(router.instances) == {"fal", "wavespeed", "openai"}
    assert "sk-x" not in repr(router.instances["openai"].provider)


def test_second_instance_of_a_plugin_joins_the_models_of_its_plugin() -> None:
    """Two instances of one plugin (two keys) both serve the models that name the plugin."""
    router = Router.from_config(
        {
            "providers": {
                "openai-a": {"plugin": "openai", "api_key": "a"},
                "openai-b": {"plugin": "openai", "api_key": "b", "weight": 2},
            }
        },
        environ=KEYS,
    )
    names = [c.instance.name for c in router.candidates_for(router.resolve("gpt-image-2"))]
    assert names == ["fal", "wavespeed", "openai-a", "openai-b"]


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({"router": {"deadline_s": -1}}, "router.deadline_s", "greater than 0"),
        (
            {"providers": {"fal": {"options": {"poll_initial_s": 0}}}},
            "providers.fal.options.poll_initial_s",
            "greater than 0",
        ),
        ({"providers": {"fal": {"optoins": {}}}}, "providers.fal.optoins", "unknown field"),
        (
            {"providers": {"x": {"plugin": "nope", "api_key": "k"}}},
            "providers.x.plugin",
            "no provider plugin 'nope'",
        ),
        (
            {"router": {"breaker": {"failure_rate_threshold": 2}}},
            "router.breaker",
            "failure_rate_threshold",
        ),
    ],
)
def test_bad_fields_are_named(config: dict, field: str, reason: str) -> None:
    """Each bad value is reported with its dotted field path and the reason."""
    with pytest.raises(ConfigError) as caught:
        Router.from_config(config, environ=KEYS)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    """A config file that is not TOML is reported with its name."""
    config = tmp_path / "broken.toml"
    config.write_text("[router\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_settings(config)


def test_catalog_override_replaces_models_and_keeps_aliases(tmp_path: Path) -> None:
    """A user catalog replaces a model by name; shipped aliases still resolve."""
    override = tmp_path / "c.toml"
    override.write_text(
        '[models."gpt-image-2"]\npolicy = "cost"\ncredits = {low = 1, standard = 2, high = 3}\n'
        '[[models."gpt-image-2".providers]]\nprovider = "openai"\nmodel = "gpt-image-2"\n'
    )
    catalog = load_catalog(override)
    model = catalog.resolve("dall-e-3")
    assert (model.name, model.policy, model.source) == ("gpt-image-2", "cost", str(override))


def test_alias_to_unknown_model_is_rejected(tmp_path: Path) -> None:
    """An alias pointing nowhere names the alias and the file."""
    override = tmp_path / "c.toml"
    override.write_text('[aliases]\n"old" = "missing"\n')
    with pytest.raises(ConfigError) as caught:
        load_catalog(override)
    assert (caught.value.file, caught.value.field) == (str(override), "aliases.old")


def test_optional_catalog_entries_are_used_only_when_buildable(tmp_path: Path) -> None:
    """An optional provider without its plugin or its key is left out; with its key it serves;
    configured explicitly without a key it is an error again."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "keyed.py").write_text(
        "from imagerouter import Provider, hookimpl\n"
        "class Keyed(Provider):\n"
        "    provider_id = 'keyed'\n"
        "    key_env_var = 'KEYED_KEY'\n"
        "    async def generate(self, request, ctx): ...\n"
        "@hookimpl\n"
        "def register_providers(register):\n"
        "    register(Keyed)\n"
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        "[models.mine]\ncredits = {low = 1, standard = 1, high = 1}\n"
        '[[models.mine.providers]]\nprovider = "fal"\nmodel = "a"\n'
        '[[models.mine.providers]]\nprovider = "not-installed"\nmodel = "b"\noptional = true\n'
        '[[models.mine.providers]]\nprovider = "keyed"\nmodel = "c"\noptional = true\n'
    )
    config = {"catalog": str(catalog), "plugins_dir": str(tmp_path / "plugins")}

    def candidates(environ: dict[str, str]) -> list[str]:
        router = Router.from_config(config, environ=environ)
        return [c.instance.name for c in router.candidates_for(router.resolve("mine"))]

    assert candidates(KEYS) == ["fal"]
    assert candidates({**KEYS, "KEYED_KEY": "k"}) == ["fal", "keyed"]
    with pytest.raises(ConfigError, match="KEYED_KEY"):
        Router.from_config({**config, "providers": {"keyed": {}}}, environ=KEYS)
