"""Fixtures of the fault tests: a PostgreSQL cluster and a Redis server of their own (they
are restarted, cut and paused here, never the shared ones), and ``make_fleet`` on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.services import OwnPostgres, OwnRedis
from tests.replicas.fleet import fleet_factory

pytestmark = pytest.mark.slow

#: The count lines of the fault tests run this session, shown at the end of the run.
COUNTS = pytest.StashKey[list[str]]()


@pytest.fixture
def fault_counts(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``fault_counts(line)``: keep a test's line of counts for the session's summary (the
    lines are printed too, so ``-rA`` shows them with the test)."""
    lines = request.config.stash.setdefault(COUNTS, [])
    return lines.append


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Every fault test's counts, after the run, whatever the report options."""
    lines = config.stash.get(COUNTS, [])
    if lines:
        terminalreporter.section("fault counts")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of the fault tests' own, removed at the end of the session."""
    server = OwnPostgres()
    try:
        server.start_cluster()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    """A redis-server of the fault tests' own, stopped at the end of the session."""
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def services(own_postgres: OwnPostgres, own_redis: OwnRedis) -> Iterator[tuple[str, str]]:
    """(PostgreSQL URL, Redis URL) of the fault tests' own servers, each running again (and
    Redis resumed) when the test ends, whatever the test did to them."""
    yield own_postgres.url, own_redis.url
    if own_redis.paused:
        own_redis.resume()
    if own_redis.proc is None or own_redis.proc.poll() is not None:
        own_redis.start()
    if not own_postgres.running():
        own_postgres.start()


@pytest.fixture
async def make_fleet(services: tuple[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    """``await make_fleet(scenario, replicas=2, …)``: a farm and replicas on the fault tests'
    own PostgreSQL and Redis (see :func:`tests.replicas.fleet.fleet_factory`)."""
    async with fleet_factory(*services, tmp_path) as make:
        yield make
