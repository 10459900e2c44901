"""Fixtures for the job API: a real app on a loopback port, backed by the in-process farm.
The client and settings are :mod:`tests.helpers.api`'s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from imagerouter.server.app import create_app
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.api import FAST_ROUTER, Api, ApiFactory, ApiTestServer, api_settings
from tests.store.pg import drop_schema, new_schema, require_postgres, with_schema


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], farm: Farm, tmp_path: Path
) -> AsyncIterator[ApiFactory]:
    """Build an app over the farm (settings overridable) and a client for it."""

    async def build(router_config: dict[str, Any] | None = None, **overrides: Any) -> Api:
        settings = api_settings(tmp_path / "data", **overrides)
        router = farm_router(farm, router_config or FAST_ROUTER, seed=1)
        app = create_app(settings, router=router)
        client = await aiohttp_client(ApiTestServer(app))
        return Api(client, app)

    return build


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    """The app with the default test settings."""
    return await make_api()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None for the default SQLite store; else a fresh PostgreSQL schema (dropped after the
    app, which is set up after this fixture, has stopped)."""
    if request.param == "sqlite":
        yield None
        return
    base = require_postgres()
    schema = new_schema()
    yield with_schema(base, schema)
    await drop_schema(base, schema)


@pytest.fixture
async def any_api(store_url: str | None, make_api: ApiFactory) -> Api:
    """The app over SQLite and over PostgreSQL."""
    return await (make_api(store=store_url) if store_url else make_api())
