"""What ``imagerouter plugins`` and ``imagerouter check-config`` catch before a router starts:
provider classes that would crash it, a provider ``base_url`` that cannot be called, an
``IMAGEROUTER_LOAD_PLUGINS`` that leaves a configured provider out, and a bad
``max_concurrency``. Each is a message naming the plugin or the field, never a traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from imagerouter.cli import main
from imagerouter.config import load_settings
from imagerouter.errors import ConfigError
from imagerouter.plugins import load_plugins

#: A drop-in plugin whose provider class has one thing wrong (``{body}``).
BROKEN_PLUGIN = """
from imagerouter import Provider, ProviderOptions, hookimpl


class Opts(ProviderOptions):
    steps: int = 10


class {cls}(Provider):
    provider_id = "{provider_id}"
    default_base_url = "http://127.0.0.1:9"
{body}
    async def generate(self, request, ctx):
        raise NotImplementedError


@hookimpl
def register_providers(register):
    register({cls})
"""

BROKEN = {
    "no_base_url.py": ("NoBaseUrl", "nobaseurl", "    default_base_url = None\n"),
    "dict_options.py": ("DictOptions", "dictoptions", "    Options = dict\n"),
    "init_raises.py": (
        "InitRaises",
        "initraises",
        "    Options = Opts\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        "        raise RuntimeError('init exploded')\n",
    ),
}

#: The built-in providers the tests do not use, left out of the config.
OFF = "".join(f"[providers.{n}]\nenabled = false\n" for n in ("fal", "wavespeed", "replicate"))


def write_broken(directory: Path, *names: str) -> Path:
    """Write the named broken plugin files into ``directory``."""
    directory.mkdir(exist_ok=True)
    for name in names:
        cls, provider_id, body = BROKEN[name]
        source = BROKEN_PLUGIN.format(cls=cls, provider_id=provider_id, body=body)
        (directory / name).write_text(textwrap.dedent(source))
    return directory


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``imagerouter ARGS`` in-process, as a user would from a shell."""
    return CliRunner().invoke(main, list(args), env=env)


def check_config(config: Path, env: dict[str, str] | None = None) -> Result:
    return cli("check-config", "--config", str(config), env=env)


def assert_clean_exit(result: Result, code: int) -> None:
    """Exited with ``code`` through the CLI's own error path: no traceback escaped."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no_base_url.py", "NoBaseUrl.default_base_url must be a string"),
        ("dict_options.py", "DictOptions.Options must be a ProviderOptions subclass"),
        ("init_raises.py", "InitRaises() raised RuntimeError: init exploded"),
    ],
)
def test_a_provider_class_that_would_crash_the_router_is_reported_and_skipped(
    tmp_path: Path, name: str, reason: str
) -> None:
    """A provider class the router could not build (no default base URL, options that are not
    a ProviderOptions model, an ``__init__`` that raises) is a plugin problem naming the file
    and the reason: ``imagerouter plugins`` exits 1, and check-config exits 2 with the same
    words whether or not the config names the provider."""
    plugins_dir = write_broken(tmp_path / "plugins", name)
    loaded = load_plugins(entry_points=False, plugins_dir=plugins_dir, log_problems=False)
    assert loaded.providers == {}
    [problem] = loaded.problems
    assert Path(problem.plugin).name == name
    assert problem.reason.startswith(reason)

    listed = cli("plugins", "--plugins-dir", str(plugins_dir))
    assert_clean_exit(listed, 1)
    assert name in listed.output
    assert reason in listed.output

    provider_id = BROKEN[name][1]
    for extra in ("", f"[providers.{provider_id}]\n"):
        config = tmp_path / "router.toml"
        config.write_text(
            f"plugins_dir = '{plugins_dir}'\n[providers.openai]\napi_key = 'k'\n{OFF}{extra}"
        )
        checked = check_config(config)
        assert_clean_exit(checked, 2)
        assert "config OK" not in checked.output
        assert name in checked.output
        assert reason in checked.output


def test_check_config_names_the_skipped_class_behind_a_configured_provider(
    tmp_path: Path,
) -> None:
    """A ``[providers.X]`` whose class was skipped says why X is missing, on the field."""
    plugins_dir = write_broken(tmp_path / "plugins", "no_base_url.py")
    config = tmp_path / "router.toml"
    config.write_text(f"plugins_dir = '{plugins_dir}'\n{OFF}[providers.nobaseurl]\n")
    checked = check_config(config)
    assert_clean_exit(checked, 2)
    assert "providers.nobaseurl.plugin: provider 'nobaseurl' did not load" in checked.output
    assert "no_base_url.py" in checked.output


@pytest.mark.parametrize("url", ["notaurl", "ftp://x", "http://", "https://user:pw@x.example"])
def test_a_base_url_that_cannot_be_called_is_a_config_error(tmp_path: Path, url: str) -> None:
    """A provider's base_url must be an absolute http(s) URL without credentials: anything
    else is refused as the config loads, naming the field, not at every call."""
    with pytest.raises(ConfigError) as caught:
        load_settings(data={"providers": {"acme": {"base_url": url}}})
    assert caught.value.field == "providers.acme.base_url"
    config = tmp_path / "router.toml"
    config.write_text(f"[providers.openai]\napi_key = 'k'\nbase_url = '{url}'\n{OFF}")
    checked = check_config(config)
    assert_clean_exit(checked, 2)
    assert "providers.openai.base_url" in checked.output


def test_a_good_base_url_is_kept(tmp_path: Path) -> None:
    """http and https URLs, with a port and a path, still load and reach the provider."""
    for url in ("http://127.0.0.1:9/v1", "https://api.acme.example"):
        settings = load_settings(data={"providers": {"acme": {"base_url": url}}})
        assert settings.providers["acme"].base_url == url
    config = tmp_path / "router.toml"
    config.write_text(
        f"[providers.openai]\napi_key = 'k'\nbase_url = 'http://127.0.0.1:9/v1'\n{OFF}"
    )
    checked = check_config(config)
    assert checked.exit_code == 0, checked.output
    assert "http://127.0.0.1:9/v1" in checked.output


def test_an_allow_list_typo_is_named_with_the_provider_it_left_out(tmp_path: Path) -> None:
    """``IMAGEROUTER_LOAD_PLUGINS=openai,fals`` with ``[providers.fal]``: check-config names
    the unknown entry ``fals`` and says the installed fal plugin was left out by the
    variable, instead of claiming fal is not installed."""
    config = tmp_path / "router.toml"
    config.write_text(
        "[providers.openai]\napi_key = 'k'\n[providers.fal]\napi_key = 'k'\n"
        "[providers.wavespeed]\nenabled = false\n"
    )
    checked = check_config(config, env={"IMAGEROUTER_LOAD_PLUGINS": "openai,fals"})
    assert_clean_exit(checked, 2)
    assert "no provider plugin 'fal' is installed" not in checked.output
    assert "'fals': named by IMAGEROUTER_LOAD_PLUGINS" in checked.output
    assert (
        "providers.fal.plugin: provider 'fal' did not load: the installed plugin 'fal' is left "
        "out by IMAGEROUTER_LOAD_PLUGINS=openai,fals"
    ) in checked.output


@pytest.mark.parametrize("value", ["lots", 0, True, 2.5, [1]])
def test_max_concurrency_names_the_field_and_what_it_takes(value: object) -> None:
    """A bad max_concurrency names the field itself (no ``.int`` from the union) and says
    what it takes: an integer of at least 1, or "adaptive"."""
    with pytest.raises(ConfigError) as caught:
        load_settings(data={"providers": {"acme": {"max_concurrency": value}}})
    assert caught.value.field == "providers.acme.max_concurrency"
    assert caught.value.reason == 'an integer ≥ 1 or "adaptive"'
    assert 'providers.acme.max_concurrency: an integer ≥ 1 or "adaptive"' in str(caught.value)


@pytest.mark.parametrize("value", [1, 50, "adaptive", None])
def test_max_concurrency_takes_a_count_or_adaptive(value: object) -> None:
    """The values the docs name still load as they are."""
    settings = load_settings(data={"providers": {"acme": {"max_concurrency": value}}})
    assert settings.providers["acme"].max_concurrency == value


def test_a_class_that_raises_only_with_its_settings_is_a_config_error_on_them(
    tmp_path: Path,
) -> None:
    """A class that builds bare but raises with what the config gives it (here a base URL it
    refuses): the router's own build is a ConfigError naming the provider's table, and the
    library's user (``Router.from_config``, serve) reads why a refused class is missing."""
    from imagerouter import Router

    (tmp_path / "plugins").mkdir()
    body = (
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        "        if 'picky' in self.base_url:\n"
        "            raise ValueError('no picky hosts')\n"
    )
    source = BROKEN_PLUGIN.format(cls="Picky", provider_id="picky", body=body)
    (tmp_path / "plugins" / "picky.py").write_text(textwrap.dedent(source))
    config = {
        "plugins_dir": str(tmp_path / "plugins"),
        "providers": {
            "openai": {"enabled": False},
            **{name: {"enabled": False} for name in ("fal", "wavespeed", "replicate")},
            "picky": {"base_url": "http://picky.example"},
        },
    }
    with pytest.raises(ConfigError) as built:
        Router.from_config(config, environ={})
    assert built.value.field == "providers.picky"
    assert "ValueError: no picky hosts" in str(built.value)
    refused = write_broken(tmp_path / "refused", "no_base_url.py")
    config = {"plugins_dir": str(refused), "providers": {"nobaseurl": {}}}
    with pytest.raises(ConfigError) as missing:
        Router.from_config(config, environ={})
    assert "did not load" in str(missing.value)
    assert "default_base_url must be a string" in str(missing.value)
