"""Fixtures for the store contract: every test runs against SQLite (in a temporary directory)
and PostgreSQL (in a fresh schema, dropped after), through ``make_store``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from imagerouter.jobs.postgres import PostgresJobStore
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.store import JobStore
from tests.store.pg import drop_schema, new_schema, require_postgres, with_schema

#: One successful provider attempt, as a worker records it with a job's end.
ATTEMPT = {
    "provider": "fal",
    "outcome": "success",
    "started_at": 1.0,
    "latency_ms": 12.0,
    "error_class": None,
    "error": None,
    "status": 200,
    "retry_after": None,
    "reason": None,
}


class StoreFactory(Protocol):
    """Opens another store instance on the same database (closed after the test)."""

    backend: str

    async def __call__(self, **options: Any) -> JobStore: ...


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL; skips when it is down, unless CI=true (then it fails)."""
    return require_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A factory of open stores on one fresh database of the parametrized backend."""
    backend = request.param
    base = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    schema = new_schema()
    opened: list[JobStore] = []

    async def make(**options: Any) -> JobStore:
        if backend == "sqlite":
            store: JobStore = SQLiteJobStore(tmp_path / "imagerouter.db", **options)
        else:
            options.setdefault("poll_interval_s", 0.2)
            options.setdefault("pool_max", 4)
            store = PostgresJobStore(with_schema(base, schema), **options)
        await store.start()
        opened.append(store)
        return store

    make.backend = backend  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for store in reversed(opened):
            await store.aclose()
        if backend == "postgres":
            await drop_schema(base, schema)


@pytest.fixture
async def store(make_store: StoreFactory) -> JobStore:
    """One open store."""
    return await make_store()
