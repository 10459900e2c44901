"""Fixtures for delivery tests: the job API over the in-process farm, with webhooks allowed to
reach 127.0.0.1, and a webhook receiver on loopback that records every request it gets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.polling import eventually

from imagerouter.auth import mint_key
from imagerouter.router import Router
from imagerouter.server.app import create_app
from imagerouter.server.keys import store_key
from imagerouter.server.settings import ServerSettings
from mockproviders import Farm

FAST_ROUTER = {"router": {"deadline_s": 20, "max_attempts": 3, "backoff_base_s": 0.01}}
FINAL = ("completed", "failed", "canceled")


def delivery_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """Small leases and polls, generous limits, webhooks to 127.0.0.1 allowed, a 1000× faster
    retry schedule and a 0.1 s SSE heartbeat."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "workers": 4,
        "lease_s": 2.0,
        "heartbeat_s": 0.5,
        "sweep_interval_s": 0.5,
        "poll_interval_s": 0.2,
        "shutdown_grace_s": 2.0,
        "auth_cache_s": 0.0,
        "rate_limits": {
            "generate": {"rate_per_s": 1000, "burst": 1000},
            "read": {"rate_per_s": 1000, "burst": 1000},
        },
        "webhook_allow": ["127.0.0.1/32"],
        "webhook_retry_scale": 0.001,
        "webhook_timeout_s": 2.0,
        "webhook_lease_s": 5.0,
        "webhook_poll_interval_s": 0.05,
        "sse_heartbeat_s": 0.1,
    }
    values.update(overrides)
    return ServerSettings.model_validate(values)


@dataclass
class Api:
    """A test client for one running app, with helpers."""

    client: TestClient
    app: web.Application

    async def key(self, account: str = "acme", credits: int = 1000) -> str:
        """A new API key for ``account`` (created if new), topped up by ``credits``."""
        store = self.app[store_key]
        found = await store.create_account(account)
        if credits:
            await store.grant_credits(found.id, credits, "test")
        minted = mint_key(found.id, "test", time.time())
        await store.create_api_key(minted.record)
        return minted.token

    @staticmethod
    def auth(token: str, **headers: str) -> dict[str, str]:
        """Headers carrying ``token``."""
        return {"Authorization": f"Bearer {token}", **headers}

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any]:
        """One request; its status and JSON body."""
        answer = await self.client.request(method, path, headers=self.auth(token), **kwargs)
        return answer.status, await answer.json()

    async def submit(self, token: str, **fields: Any) -> dict[str, Any]:
        """Submit a job (202 expected); its body."""
        body = {"model": "gpt-image-2", "prompt": "a lighthouse", **fields}
        status, answer = await self.call("POST", "/v1/jobs", token, json=body)
        assert status == 202, answer
        return answer

    async def wait_final(self, token: str, job_id: str, timeout_s: float = 20.0) -> dict:
        """Poll the job until it is final (a bounded hang guard) and return its body."""

        async def final() -> dict | None:
            _, body = await self.call("GET", f"/v1/jobs/{job_id}", token)
            return body if body["status"] in FINAL else None

        return await eventually(final, timeout_s=timeout_s, what=f"job {job_id} to end")

    async def deliveries(self, token: str, job_id: str) -> list[dict[str, Any]]:
        """The job's delivery log."""
        status, body = await self.call("GET", f"/v1/jobs/{job_id}/deliveries", token)
        assert status == 200, body
        return body["data"]

    async def wait_delivery(
        self, token: str, job_id: str, statuses: tuple[str, ...], timeout_s: float = 20.0
    ) -> dict[str, Any]:
        """Poll the job's (single) delivery until its status is one of ``statuses``."""

        async def reached() -> dict[str, Any] | None:
            found = await self.deliveries(token, job_id)
            return found[0] if found and found[0]["status"] in statuses else None

        return await eventually(
            reached, timeout_s=timeout_s, what=f"the delivery of {job_id} to be {statuses}"
        )


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], farm: Farm, tmp_path: Path
) -> ApiFactory:
    """Build an app over the farm on ``tmp_path/data`` (settings overridable)."""

    async def build(**overrides: Any) -> Api:
        settings = delivery_settings(tmp_path / "data", **overrides)
        router = Router.from_farm(farm, FAST_ROUTER, seed=1)
        client = await aiohttp_client(create_app(settings, router=router))
        return Api(client, client.app)

    return build


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    """The app with the default delivery test settings."""
    return await make_api()


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers from ``script`` in order (then ``default``),
    records every request, and lets a test wait for a number of them."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (204, {})
    check: Callable[[Hit], int | None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(request.path, dict(request.headers), await request.read(), time.time())
        self.hits.append(hit)
        self.arrived.set()
        status, headers = self.script.pop(0) if self.script else self.default
        if self.check is not None:
            status = self.check(hit) or status
        return web.Response(status=status, headers=headers)

    async def wait_hits(self, count: int, timeout_s: float = 20.0) -> list[Hit]:
        """Wait (bounded) until ``count`` requests arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.hits) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(self.hits)} of {count} webhooks arrived"
            self.arrived.clear()
            if len(self.hits) >= count:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.hits


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver listening on a free 127.0.0.1 port, at ``/hook``."""
    found = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("/hook"))
    try:
        yield found
    finally:
        await server.close()
