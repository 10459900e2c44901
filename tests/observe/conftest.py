"""Fixtures for observability: an app with metrics, logs and the dashboard, and helpers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from imagerouter.auth import mint_key
from imagerouter.server.app import create_app
from imagerouter.server.keys import store_key
from imagerouter.server.settings import ServerSettings
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.polling import eventually

ADMIN_KEY = "adm_observe_test_0123456789"
#: Router settings that keep failing jobs short.
FAST_ROUTER = {"router": {"deadline_s": 20, "max_attempts": 3, "backoff_base_s": 0.01}}
FINAL = ("completed", "failed", "canceled")


def observe_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """Server settings for these tests: small leases, generous limits, logs left alone."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "workers": 8,
        "lease_s": 2.0,
        "heartbeat_s": 0.5,
        "sweep_interval_s": 0.5,
        "poll_interval_s": 0.2,
        "shutdown_grace_s": 2.0,
        "auth_cache_s": 0.0,
        "admin_key": ADMIN_KEY,
        "log_format": "off",
        "rate_limits": {
            "generate": {"rate_per_s": 10000, "burst": 10000},
            "read": {"rate_per_s": 10000, "burst": 10000},
        },
    }
    values.update(overrides)
    return ServerSettings.model_validate(values)


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
class Api:
    """A test client for one running app."""

    client: TestClient
    app: web.Application

    async def key(self, account: str = "acme", credits: int = 100_000) -> str:
        """A new API key for ``account``, topped up by ``credits``."""
        store = self.app[store_key]
        found = await store.create_account(account)
        if credits:
            await store.grant_credits(found.id, credits, "test")
        minted = mint_key(found.id, "test", time.time())
        await store.create_api_key(minted.record)
        return minted.token

    async def submit(self, token: str, prompt: str = "a lighthouse", **body: Any) -> dict:
        """Submit a flux-dev job; its 202 body."""
        answer = await self.client.post(
            "/v1/jobs",
            json={"model": "flux-dev", "prompt": prompt, **body},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status == 202, await answer.text()
        return await answer.json()

    async def wait_final(self, token: str, job_id: str, timeout_s: float = 20.0) -> dict:
        """Poll the job until it is final (a bounded hang guard) and return its body."""

        async def final() -> dict | None:
            answer = await self.client.get(
                f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
            )
            body = await answer.json()
            return body if body["status"] in FINAL else None

        return await eventually(final, timeout_s=timeout_s, what=f"job {job_id} to end")

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``GET /metrics`` as ``{(sample name, sorted labels): value}``."""
        answer = await self.client.get("/metrics")
        assert answer.status == 200
        return parse_metrics(await answer.text())


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus exposition as ``{(sample name, sorted labels): value}``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample(values: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when it is absent)."""
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


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
