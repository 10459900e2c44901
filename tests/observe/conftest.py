"""Fixtures for observability: an app with metrics, logs and the dashboard, and helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from imagerouter.server.app import create_app
from imagerouter.server.settings import ServerSettings
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.api import FAST_ROUTER, api_settings
from tests.helpers.api import Api as ServerApi
from tests.helpers.metrics import Samples, parse_metrics

ADMIN_KEY = "adm_observe_test_0123456789"


def observe_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """The job API's test settings, plus more workers, the admin key, logs left alone and
    more generous limits."""
    values: dict[str, Any] = {
        "workers": 8,
        "admin_key": ADMIN_KEY,
        "log_format": "off",
        "rate_limits": {
            "generate": {"rate_per_s": 10000, "burst": 10000},
            "read": {"rate_per_s": 10000, "burst": 10000},
        },
    }
    return api_settings(data_dir, **{**values, **overrides})


def write_scenario(path: Path, **extra: str) -> Path:
    """A fast, fault-free farm scenario (``extra``: more TOML lines per provider)."""
    lines = ['description = "observe test"', "seed = 7"]
    for name in ("openai", "fal", "wavespeed"):
        lines += [f"[providers.{name}]", "latency_ms = 2", "generation_ms = 20"]
        if name in extra:
            lines.append(extra[name])
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Api(ServerApi):
    """The job API's test client, with more credits per key, flux-dev submits and metrics."""

    async def key(self, account: str = "acme", credits: int = 100_000) -> str:
        """A new API key for ``account``, topped up by ``credits``."""
        return await super().key(account, credits)

    async def submit(self, token: str, prompt: str = "a lighthouse", **body: Any) -> dict:
        """Submit a flux-dev job; its 202 body."""
        answer = await self.client.post(
            "/v1/jobs",
            json={"model": "flux-dev", "prompt": prompt, **body},
            headers=self.auth(token),
        )
        assert answer.status == 202, await answer.text()
        return await answer.json()

    async def metrics(self) -> Samples:
        """``GET /metrics`` as ``{(sample name, sorted labels): value}``."""
        answer = await self.client.get("/metrics")
        assert answer.status == 200
        return parse_metrics(await answer.text())


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path):
    """Build an app over a ``shared`` farm, or with its own (setting ``farm``), and a client."""

    async def build(
        shared: Farm | None = None, router_config: dict[str, Any] | None = None, **overrides: Any
    ) -> Api:
        settings = observe_settings(tmp_path / "data", **overrides)
        if shared is not None:
            router = farm_router(shared, router_config or FAST_ROUTER, seed=1)
            app = create_app(settings, router=router)
        else:
            app = create_app(settings, router_overrides=router_config or FAST_ROUTER)
        return Api(await aiohttp_client(app), app)

    return build
