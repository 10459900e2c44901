"""A provider API is only its wire format, and reaches the farm through its plugin: the farm's
faults and stats apply to it, and the farm itself names no provider."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import mockproviders
from imagerouter.plugins import load_plugins
from mockproviders import Call, Farm, FarmAdapter, FarmError, FarmRoute, auth_token


class AcmeAPI(FarmAdapter):
    """A made-up provider: ``POST /acme/v1/draw`` with ``X-Acme-Key``, errors as ``{"oops"}``."""

    name = "acme"
    prefix = "/acme"
    sdk_path = "/v1"

    def routes(self) -> Sequence[FarmRoute]:
        """One generation route."""
        return [FarmRoute("POST", "/v1/draw", self.draw, generation=True)]

    def api_key(self, request: web.Request) -> str | None:
        """Acme reads its own header (falling back to a bearer token)."""
        return request.headers.get("X-Acme-Key") or auth_token(request, "Bearer")

    async def draw(self, call: Call) -> web.StreamResponse:
        """Draw one image at 300x200."""
        if call.content_policy:
            return web.json_response({"oops": "naughty"}, status=451)
        await call.generate()
        image = call.images(call.body["prompt"], None, 300, 200, 1)[0]
        return web.json_response({"picture": image.url})

    def error_response(self, error: FarmError, call: Call) -> web.StreamResponse:
        """Acme's error shape."""
        return web.json_response({"oops": error.kind.value}, status=error.status)


async def test_extra_adapter_gets_faults_stats_and_control(
    session: aiohttp.ClientSession,
) -> None:
    """An extra adapter is served, listed, faulted, rate-limited and counted like the others."""
    async with Farm(adapters=[AcmeAPI()]) as farm:
        url = farm.base_url("acme") + "/draw"
        headers = {"X-Acme-Key": "acme-1"}
        assert farm.providers()["providers"]["acme"]["base_url"] == f"{farm.url}/acme/v1"

        ok = await session.post(url, json={"prompt": "x"}, headers=headers)
        picture = (await ok.json())["picture"]
        assert (await session.get(picture)).status == 200

        farm.set_faults("acme", {"error_rates": {"502": 1.0}})
        failed = await session.post(url, json={"prompt": "x"}, headers=headers)
        assert (failed.status, await failed.json()) == (502, {"oops": "server_error"})

        farm.set_faults("acme", {"rate_limit": {"rpm": 60, "burst": 1}, "retry_after_s": 5})
        assert (await session.post(url, json={"prompt": "x"}, headers=headers)).status == 200
        limited = await session.post(url, json={"prompt": "x"}, headers=headers)
        assert limited.status == 429
        assert limited.headers["retry-after"] == "1"
        assert (await limited.json()) == {"oops": "rate_limited"}

        farm.set_faults("acme", {"error_rates": {"content_policy": 1.0}})
        refused = await session.post(url, json={"prompt": "x"}, headers=headers)
        assert refused.status == 451

        unkeyed = await session.post(url, json={"prompt": "x"})
        assert (await unkeyed.json()) == {"oops": "unauthorized"}

        acme = farm.stats()["providers"]["acme"]
        assert acme["by_status"] == {"200": 2, "401": 1, "429": 1, "451": 1, "502": 1}
        assert acme["keys"]["acme-1"]["retry_after_issued"] == 1


@pytest.mark.parametrize("provider", ["openai", "fal", "wavespeed", "replicate"])
def test_each_builtin_plugin_registers_its_adapter_through_the_hook(provider: str) -> None:
    """Loaded alone, a built-in plugin module registers exactly its own farm adapter, named as
    its provider, from the same hook a third-party plugin uses."""
    module = importlib.import_module(f"imagerouter_{provider}")
    plugins = load_plugins(entry_points=False, extra=[module])
    assert not plugins.problems
    assert [adapter.name for adapter in plugins.farm_adapters] == [provider]
    assert type(plugins.farm_adapters[0]).__module__ == f"imagerouter_{provider}_farm"


def test_the_farm_serves_the_adapters_it_is_given_and_names_no_provider() -> None:
    """Farm(adapters=[]) serves no provider API; no farm module names a provider."""
    assert Farm(adapters=[]).state.adapters == {}
    names = re.compile(r"openai|wavespeed|replicate|\bfal\b|fal[-_.]", re.IGNORECASE)
    for path in sorted(Path(mockproviders.__file__).parent.glob("*.py")):
        found = names.findall(path.read_text())
        assert not found, f"{path.name} names a provider: {found}"
