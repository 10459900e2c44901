"""Plugin loading: entry points, a plugins directory, objects in code, and broken plugins."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagerouter import ImageRequest, Router, hookimpl, load_plugins
from imagerouter.catalog import Catalog, load_catalog

SOLID_PLUGIN = '''
import base64
from imagerouter import GeneratedImage, Provider, ProviderOutput, hookimpl

class SolidProvider(Provider):
    """Makes a one-pixel image without any network call."""
    provider_id = "{provider_id}"
    async def generate(self, request, ctx):
        pixel = base64.b64encode(b"{provider_id}").decode()
        return ProviderOutput([GeneratedImage(b64_json=pixel)], "local-1")

@hookimpl
def register_providers(register):
    register(SolidProvider)
'''


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def catalog_with(provider_id: str) -> Catalog:
    return load_catalog().merged(
        Catalog.model_validate(
            {
                "models": {
                    "solid": {
                        "credits": {"low": 1, "standard": 1, "high": 1},
                        "providers": [{"provider": provider_id, "model": "solid-1"}],
                    }
                },
                "sources": ["<test>"],
            }
        )
    )


def test_builtin_providers_load_through_entry_points() -> None:
    """The three bundled providers are registered by the 'imagerouter' entry-point group."""
    plugins = load_plugins()
    assert {"openai", "fal", "wavespeed"} <= set(plugins.providers)
    assert plugins.provider_origin["fal"] == "fal"
    assert plugins.problems == []


def test_allow_list_limits_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAGEROUTER_LOAD_PLUGINS loads only the named entry points."""
    monkeypatch.setenv("IMAGEROUTER_LOAD_PLUGINS", "fal")
    assert set(load_plugins().providers) == {"fal"}


async def test_installed_entry_point_plugin_loads_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution that declares an 'imagerouter' entry point is found and serves a model."""
    write(tmp_path, "acme_solid.py", SOLID_PLUGIN.format(provider_id="acme"))
    dist = tmp_path / "acme_solid-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-solid\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[imagerouter]\nacme = acme_solid\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins()
    assert plugins.provider_origin["acme"] == "acme"
    router = Router.from_config(
        {"providers": {name: {"enabled": False} for name in ("openai", "fal", "wavespeed")}},
        plugins=plugins,
        catalog=catalog_with("acme"),
        environ={},
    )
    async with router:
        result = await router.generate(ImageRequest(model="solid", prompt="anything"))
    assert result.provider == "acme"
    assert result.images[0].b64_json == "YWNtZQ=="


async def test_dropin_directory_plugin_loads_and_serves(tmp_path: Path) -> None:
    """A .py file in the plugins directory registers a provider that serves a model."""
    write(tmp_path, "local_solid.py", SOLID_PLUGIN.format(provider_id="solid"))
    plugins = load_plugins(plugins_dir=tmp_path)
    assert plugins.provider_origin["solid"].endswith("local_solid.py")
    router = Router.from_config(
        {"providers": {name: {"enabled": False} for name in ("openai", "fal", "wavespeed")}},
        plugins=plugins,
        catalog=catalog_with("solid"),
        environ={},
    )
    async with router:
        result = await router.generate(ImageRequest(model="solid", prompt="anything"))
    assert result.provider == "solid"
    assert [a["outcome"] for a in result.attempts] == ["ok"]


def test_plugin_object_passed_in_code_registers() -> None:
    """A plugin object handed to load_plugins(extra=...) registers its providers."""
    namespace: dict[str, object] = {}
    exec(SOLID_PLUGIN.format(provider_id="inline"), namespace)

    class InlinePlugin:
        @hookimpl
        def register_providers(self, register):
            register(namespace["SolidProvider"])

    plugins = load_plugins(entry_points=False, extra=[InlinePlugin()])
    assert set(plugins.providers) == {"inline"}


def test_broken_plugins_are_reported_and_skipped(tmp_path: Path) -> None:
    """Import errors, bad hook signatures, unknown hooks, duplicate ids, failing hooks and
    non-provider registrations are each reported with the plugin's name; the rest still load."""
    write(tmp_path, "a_import_error.py", "import no_such_module_here\n")
    write(
        tmp_path,
        "b_bad_signature.py",
        """
        from imagerouter import hookimpl
        @hookimpl
        def register_providers(regster):
            pass
    """,
    )
    write(
        tmp_path,
        "c_unknown_hook.py",
        """
        from imagerouter import hookimpl
        @hookimpl
        def register_provider(register):
            pass
    """,
    )
    write(tmp_path, "d_duplicate.py", SOLID_PLUGIN.format(provider_id="fal"))
    write(
        tmp_path,
        "e_hook_raises.py",
        """
        from imagerouter import hookimpl
        @hookimpl
        def register_providers(register):
            raise RuntimeError("boom")
    """,
    )
    write(
        tmp_path,
        "f_not_a_provider.py",
        """
        from imagerouter import hookimpl
        @hookimpl
        def register_providers(register):
            register(dict)
    """,
    )
    write(tmp_path, "g_good.py", SOLID_PLUGIN.format(provider_id="good"))
    plugins = load_plugins(plugins_dir=tmp_path)
    reasons = {Path(p.plugin).name: p.reason for p in plugins.problems}
    assert "ModuleNotFoundError" in reasons["a_import_error.py"]
    assert "regster" in reasons["b_bad_signature.py"]
    assert "register_provider" in reasons["c_unknown_hook.py"]
    assert "'fal' is already registered by 'fal'" in reasons["d_duplicate.py"]
    assert "RuntimeError: boom" in reasons["e_hook_raises.py"]
    assert "Provider subclass" in reasons["f_not_a_provider.py"]
    assert {"openai", "fal", "wavespeed", "good"} <= set(plugins.providers)
    assert plugins.provider_origin["fal"] == "fal"


def test_missing_plugins_directory_is_reported(tmp_path: Path) -> None:
    """A plugins directory that does not exist is a reported problem, not a crash."""
    plugins = load_plugins(entry_points=False, plugins_dir=tmp_path / "nope")
    assert [p.reason for p in plugins.problems] == ["plugins directory not found"]


async def test_farm_adapter_hook_adds_a_wire_format_to_the_farm() -> None:
    """A plugin's register_farm_adapters hook gives the farm a new provider API, faults and all."""
    import aiohttp
    from aiohttp import web

    from mockproviders import Call, Farm, FarmAdapter, FarmError, FarmRoute

    class EchoAPI(FarmAdapter):
        name, prefix, sdk_path = "echo", "/echo", "/v1"

        def routes(self):
            return [FarmRoute("POST", "/v1/draw", self.draw, generation=True)]

        async def draw(self, call: Call) -> web.StreamResponse:
            return web.json_response({"ok": True})

        def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
            return web.json_response({"error": error.kind.value}, status=error.status)

    class EchoPlugin:
        @hookimpl
        def register_farm_adapters(self, register):
            register(EchoAPI())

    plugins = load_plugins(entry_points=False, extra=[EchoPlugin()])
    async with Farm(adapters=plugins.farm_adapters) as farm, aiohttp.ClientSession() as client:
        url = farm.base_url("echo") + "/draw"
        headers = {"Authorization": "Bearer k"}
        async with client.post(url, json={}, headers=headers) as response:
            assert response.status == 200
        farm.set_faults("echo", {"down": True})
        async with client.post(url, json={}, headers=headers) as response:
            assert response.status == 503
    assert farm.stats()["providers"]["echo"]["by_status"] == {"200": 1, "503": 1}


def test_a_production_router_never_imports_the_mock() -> None:
    """The farm-adapter hooks run when a farm asks for them, not at load: a router built from
    every plugin leaves the mock farm's code unimported (a fresh interpreter, as a server)."""
    code = textwrap.dedent(
        """
        import sys
        from imagerouter import Router, load_plugins
        plugins = load_plugins()
        keys = {n: {"api_key": "k"} for n in ("openai", "fal", "wavespeed", "replicate")}
        Router.from_config({"providers": keys}, plugins=plugins, environ={})
        mock = lambda: sorted(m for m in sys.modules if m.startswith("mockproviders"))
        print(mock() == [], len(plugins.farm_adapters), mock() != [])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "4", "True"]


def test_check_config_fails_while_a_plugin_does_not_load(tmp_path: Path) -> None:
    """``imagerouter check-config`` is a CI gate: a plugin that does not load (here a drop-in
    that fails to import, and an allow-list naming no installed plugin) names itself and the
    command exits non-zero; without them it says config OK."""
    from click.testing import CliRunner

    from imagerouter.cli import main

    keys = "".join(f"[providers.{n}]\napi_key = 'k'\n" for n in ("openai", "fal", "wavespeed"))
    config = tmp_path / "router.toml"
    config.write_text(f"plugins_dir = '{tmp_path / 'plugins'}'\n{keys}")
    (tmp_path / "plugins").mkdir()
    env = {"IMAGEROUTER_LOAD_PLUGINS": "fal,openai,wavespeed,replicate"}
    ok = CliRunner().invoke(main, ["check-config", "--config", str(config)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "config OK" in ok.output
    write(tmp_path / "plugins", "broken.py", "import no_such_module_here\n")
    env["IMAGEROUTER_LOAD_PLUGINS"] += ",replicat"
    bad = CliRunner().invoke(main, ["check-config", "--config", str(config)], env=env)
    assert bad.exit_code == 2
    assert "config OK" not in bad.output
    assert "broken.py" in bad.output
    assert "ModuleNotFoundError" in bad.output
    assert "'replicat': named by IMAGEROUTER_LOAD_PLUGINS" in bad.output
    assert bad.output.count("broken.py") == 1  # printed once, not logged besides
    listed = CliRunner().invoke(
        main, ["plugins", "--plugins-dir", str(tmp_path / "plugins")], env=env
    )
    assert listed.exit_code == 1
    assert listed.output.count("broken.py") == 1


def test_check_config_names_the_models_no_provider_serves(tmp_path: Path) -> None:
    """With fal, WaveSpeed and Replicate off the config is fine, and check-config says which
    models a submit will now be refused for (flux-dev's providers are those three)."""
    from click.testing import CliRunner

    from imagerouter.cli import main

    config = tmp_path / "router.toml"
    off = "".join(f"[providers.{n}]\nenabled = false\n" for n in ("fal", "wavespeed", "replicate"))
    config.write_text(f"[providers.openai]\napi_key = 'k'\n{off}")
    result = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "config OK" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("models no provider"))
    unserved = line.split(": ", 1)[1].split(", ")
    assert "flux-dev" in unserved
    assert "gpt-image-2" not in unserved


def test_plugins_that_would_do_nothing_silently_are_reported(tmp_path: Path) -> None:
    """A hook without @hookimpl, a file with no hook at all and an 'async def' hook each
    register nothing: each is a reported problem naming what to fix, not a silent no-op."""
    write(
        tmp_path,
        "a_unmarked.py",
        """
        def register_providers(register):
            pass
    """,
    )
    write(tmp_path, "b_nothing.py", "X = 1\n")
    write(
        tmp_path,
        "c_async.py",
        SOLID_PLUGIN.format(provider_id="asyncy").replace(
            "def register_providers", "async def register_providers"
        ),
    )
    plugins = load_plugins(entry_points=False, plugins_dir=tmp_path)
    reasons = {Path(p.plugin).name: p.reason for p in plugins.problems}
    assert reasons["a_unmarked.py"] == (
        "implements no imagerouter hook: register_providers lacks @hookimpl"
    )
    assert reasons["b_nothing.py"].startswith("implements no imagerouter hook: a plugin is")
    assert "'async def'" in reasons["c_async.py"]
    assert plugins.providers == {}


def test_a_farm_hook_that_fails_is_logged_only_where_problems_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The farm-adapter hooks run when a farm asks; a failing one joins the problems, and is
    logged as load_plugins' own problems are: not when the caller prints them itself."""

    class BrokenFarmPlugin:
        @hookimpl
        def register_farm_adapters(self, register):
            raise RuntimeError("no farm here")

    for logged in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="imagerouter.plugins"):
            plugins = load_plugins(
                entry_points=False, extra=[BrokenFarmPlugin()], log_problems=logged
            )
            assert plugins.farm_adapters == []
        assert [p.reason for p in plugins.problems] == ["hook failed: RuntimeError: no farm here"]
        assert len(caplog.records) == int(logged)
