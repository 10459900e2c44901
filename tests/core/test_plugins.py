"""Plugin loading: entry points, a plugins directory, objects in code, and broken plugins."""

from __future__ import annotations

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
