"""Fixtures for the multi-replica tests: the real PostgreSQL and Redis (skipped when absent,
a failure under ``CI=true``), and ``make_fleet``, which starts a farm and N replicas on a
fresh schema and Redis prefix, and stops and removes them all afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.redis_service import REDIS_URL, require_redis
from tests.replicas.fleet import fleet_factory
from tests.store.pg import require_postgres

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def services() -> tuple[str, str]:
    """(PostgreSQL URL, Redis URL); skips when either is down, unless CI=true (then fails)."""
    pg_url = require_postgres()
    return pg_url, require_redis(REDIS_URL)


@pytest.fixture
async def make_fleet(services: tuple[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    """``await make_fleet(scenario, replicas=3, …)``: see :func:`fleet_factory`."""
    async with fleet_factory(*services, tmp_path) as make:
        yield make
