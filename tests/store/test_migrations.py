"""PostgreSQL schema migrations: versioned files, applied once, under an advisory lock, by
``imagerouter db migrate`` and by every store that opens."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from imagerouter.jobs import migrations
from imagerouter.jobs.errors import StoreError
from imagerouter.jobs.postgres import PostgresJobStore
from tests.store.pg import drop_schema, new_schema, with_schema


@pytest.fixture
async def schema(pg_url: str) -> AsyncIterator[str]:
    """A schema name of this test's own (dropped after)."""
    name = new_schema("irmig")
    yield name
    await drop_schema(pg_url, name)


async def test_racing_migrations_apply_each_version_once(pg_url: str, schema: str) -> None:
    """Four migrators starting together (replicas booting at once): the versions are applied
    once, by one of them, and the others find nothing to do."""
    conns = [await asyncpg.connect(pg_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrations.migrate(c, schema) for c in conns))
        versions = [1, 2, 3, 4, 5]
        assert [m.version for m in migrations.MIGRATIONS] == versions
        assert sorted(map(tuple, applied)) == [(), (), (), tuple(versions)]
        found = await migrations.status(conns[0], schema)
        assert (found.applied, found.pending, found.changed) == (versions, [], [])
        rows = await conns[0].fetch(f'SELECT version FROM "{schema}".schema_migrations')
        assert sorted(r[0] for r in rows) == versions
    finally:
        for conn in conns:
            await conn.close()


async def test_a_newer_schema_is_refused(pg_url: str, schema: str) -> None:
    """A database migrated by a newer imagerouter is not touched: migrate raises."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrations.migrate(conn, schema)
        await conn.execute(
            f'INSERT INTO "{schema}".schema_migrations (version, name, checksum) '
            "VALUES (999, 'future', 'x')"
        )
        with pytest.raises(StoreError, match="newer than this imagerouter"):
            await migrations.migrate(conn, schema)
    finally:
        await conn.close()


async def test_a_store_without_migrations_says_what_to_run(pg_url: str, schema: str) -> None:
    """A store opened with ``migrate=False`` on an empty schema refuses, naming the command."""
    store = PostgresJobStore(with_schema(pg_url, schema), migrate=False)
    with pytest.raises(StoreError, match="imagerouter db migrate"):
        await store.start()


def test_db_migrate_command(pg_url: str, schema: str) -> None:
    """``imagerouter db migrate --store URL`` applies the migrations, then says it is up to
    date; ``db status`` lists them as applied."""
    url = with_schema(pg_url, schema)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagerouter", "db", *args, "--store", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = run("migrate")
    assert first.returncode == 0, first.stderr
    assert "applied migrations 0001, 0002, 0003, 0004, 0005" in first.stdout
    again = run("migrate")
    assert (again.returncode, "up to date" in again.stdout) == (0, True)
    status = run("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.split() == [
        "0001_jobs:",
        "applied",
        "0002_webhooks:",
        "applied",
        "0003_key_routing:",
        "applied",
        "0004_progress_webhooks:",
        "applied",
        "0005_windows:",
        "applied",
    ]


def test_db_migrate_names_the_store_without_a_password_given_as_a_parameter(
    pg_url: str, schema: str
) -> None:
    """A password in the store URL's query (``?password=``, as libpq takes it) is hidden in
    what ``db migrate`` prints; the other parameters (``schema``) are shown."""
    password = "hunter2-in-the-query"
    url = f"{with_schema(pg_url, schema)}&password={password}"

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagerouter", "db", "migrate", "--store", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for run in (migrate(), migrate()):  # applied, then up to date
        assert run.returncode == 0, run.stderr
        assert password not in run.stdout + run.stderr
        assert f"?schema={schema}&password=***" in run.stdout
    assert "is up to date" in run.stdout


async def test_keys_and_credits_commands_use_the_configured_store(
    pg_url: str, schema: str, tmp_path
) -> None:
    """With ``[server] store = "postgresql://…"``, ``keys create`` and ``credits grant`` write to
    PostgreSQL (where the replicas read), not to a local SQLite file."""
    config = tmp_path / "imagerouter.toml"
    config.write_text(f'[server]\nstore = "{with_schema(pg_url, schema)}"\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagerouter", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )

    created = run("keys", "create", "--account", "fleet", "--credits", "40")
    assert created.returncode == 0, created.stderr
    granted = run("credits", "grant", "fleet", "2")
    assert granted.returncode == 0, granted.stderr
    store = PostgresJobStore(with_schema(pg_url, schema))
    await store.start()
    try:
        account = await store.find_account("fleet")
        assert account is not None
        assert account.balance == 42
    finally:
        await store.aclose()
    assert not (tmp_path / ".imagerouter").exists()
