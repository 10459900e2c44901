"""Versioned SQL migrations of the PostgreSQL job store, and the runner that applies them.

Each ``NNNN_name.sql`` file beside this module is one version, applied once, in its own
transaction, in version order; ``schema_migrations`` records what ran (with a checksum of the
file). :func:`migrate` holds a PostgreSQL advisory lock (one per schema) while it looks and
applies, so replicas that start together, or ``imagerouter db migrate`` run beside them, never
race: the first applies, the others wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from imagerouter.jobs.errors import StoreError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["LOCK_CLASS", "MIGRATIONS", "Migration", "MigrationStatus", "migrate", "status"]

log = logging.getLogger(__name__)

#: First key of the two-key advisory lock (the second is the schema's hash): "imgr".
LOCK_CLASS = 0x696D6772
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text (an applied file must not change)."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """What a database has: versions applied, pending, and applied files that changed since."""

    schema: str
    applied: list[int]
    pending: list[int]
    changed: list[int]
    latest: int


def _load() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1, 2, 3… without gaps: {versions}")
    return tuple(found)


#: Every migration shipped, in order.
MIGRATIONS: tuple[Migration, ...] = _load()

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _applied(conn: asyncpg.Connection, schema: str) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{_ident(schema)}.schema_migrations")
    if exists is None:
        return {}
    rows = await conn.fetch(f"SELECT version, checksum FROM {_ident(schema)}.schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def status(conn: asyncpg.Connection, schema: str) -> MigrationStatus:
    """What ``schema`` has applied and what is pending (reads only; takes no lock)."""
    applied = await _applied(conn, schema)
    known = {m.version: m for m in MIGRATIONS}
    return MigrationStatus(
        schema=schema,
        applied=sorted(applied),
        pending=[m.version for m in MIGRATIONS if m.version not in applied],
        changed=[v for v, c in sorted(applied.items()) if v in known and known[v].checksum != c],
        latest=MIGRATIONS[-1].version,
    )


async def migrate(
    conn: asyncpg.Connection, schema: str, *, lock_timeout_s: float = 60.0
) -> list[int]:
    """Create ``schema`` if needed and apply every pending migration to it, under the advisory
    lock; returns the versions applied (empty when it was up to date).

    Raises StoreError if the database has a version newer than this imagerouter knows.
    """
    key = await conn.fetchval("SELECT hashtext($1)", schema)
    await conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
    try:
        await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, key)
    finally:
        await conn.execute("RESET lock_timeout")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        applied = await _applied(conn, schema)
        newest = max(applied, default=0)
        if newest > MIGRATIONS[-1].version:
            raise StoreError(
                f"schema {schema!r} is at version {newest}, newer than this imagerouter "
                f"({MIGRATIONS[-1].version}); upgrade imagerouter"
            )
        done: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    log.warning(
                        "migration %04d_%s changed since it was applied to %s",
                        migration.version,
                        migration.name,
                        schema,
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {_ident(schema)}")
                await conn.execute(_TABLE)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %04d_%s to %s", migration.version, migration.name, schema)
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, key)
