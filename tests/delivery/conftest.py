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

from imagerouter.server.app import create_app
from imagerouter.server.settings import ServerSettings
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.api import FAST_ROUTER, api_settings
from tests.helpers.api import Api as ServerApi
from tests.polling import eventually


def delivery_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """The job API's test settings, plus webhooks to 127.0.0.1 allowed, a 1000× faster retry
    schedule and a 0.1 s SSE heartbeat."""
    webhooks: dict[str, Any] = {
        "webhook_allow": ["127.0.0.1/32"],
        "webhook_retry_scale": 0.001,
        "webhook_timeout_s": 2.0,
        "webhook_lease_s": 5.0,
        "webhook_poll_interval_s": 0.05,
        "sse_heartbeat_s": 0.1,
    }
    return api_settings(data_dir, **{**webhooks, **overrides})


@dataclass
class Api(ServerApi):
    """The job API's test client, with helpers for webhooks and events."""

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
        router = farm_router(farm, FAST_ROUTER, seed=1)
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


@contextlib.asynccontextmanager
async def listening(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Serve ``handler`` for every path on a free 127.0.0.1 port; yields its ``/hook`` URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        await server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver listening on a free 127.0.0.1 port, at ``/hook``."""
    found = Receiver()
    async with listening(found.handle) as found.url:
        yield found
