"""``imagerouter db migrate`` and ``imagerouter db status``: the job store's schema.

The store comes from ``--store``, else the config file's ``[server] store``, else
``IMAGEROUTER_SERVER_STORE``; without one, the embedded SQLite store under ``data_dir``. For
PostgreSQL, the versioned SQL files of :mod:`imagerouter.jobs.migrations` are applied under an
advisory lock, so running this while replicas start is safe (each replica also migrates on
start); that needs the ``postgres`` extra. SQLite creates and upgrades its schema itself
whenever it is opened.
"""

from __future__ import annotations

import asyncio
import sys

import click

from imagerouter.cli.options import config_option
from imagerouter.cli.output import fail
from imagerouter.errors import ConfigError, ImageRouterError
from imagerouter.extras import require
from imagerouter.jobs import migrations
from imagerouter.jobs.postgres import is_postgres_url, parse_url, redact_url
from imagerouter.server.settings import load_server_settings

__all__ = ["db"]

store_option = click.option(
    "--store",
    default=None,
    metavar="URL",
    help="postgresql://user@host:port/db[?schema=NAME] (default: [server] store).",
)


def _store_url(config_path: str | None, store: str | None) -> str:
    """The store's URL: ``--store``, else the settings' store, else SQLite under data_dir."""
    try:
        settings = load_server_settings(config_path, store=store)
    except ConfigError as exc:
        if store is not None and exc.field == "server.store":  # the flag's, which wins
            fail(_not_a_store(store))
        fail(exc)
    except ImageRouterError as exc:
        fail(exc)
    return settings.store or f"sqlite://{settings.data_dir / 'imagerouter.db'}"


def _not_a_store(store: str) -> str:
    """Why ``--store`` is refused, naming it without its password, and what it takes."""
    return (
        f"--store {redact_url(store)} is not a job store URL: give postgresql://user@host/db"
        "[?schema=NAME], or sqlite:///path/to/imagerouter.db (without --store: SQLite in the "
        "data directory, [server] data_dir)"
    )


async def _connect(url: str):
    require("postgres", "imagerouter db on PostgreSQL")
    import asyncpg

    dsn, own = parse_url(url)
    return await asyncpg.connect(dsn, timeout=10), own.get("schema") or "public"


async def _migrate(url: str) -> list[int]:
    conn, schema = await _connect(url)
    try:
        return await migrations.migrate(conn, schema)
    finally:
        await conn.close()


async def _status(url: str) -> migrations.MigrationStatus:
    conn, schema = await _connect(url)
    try:
        return await migrations.status(conn, schema)
    finally:
        await conn.close()


async def _open_sqlite(url: str) -> None:
    from imagerouter.jobs.backends import open_store

    async with open_store(url):  # starting it creates the schema
        pass


def _run(work, url: str):
    """``work``'s result; a failure is one line naming the store (without its password)."""
    try:
        return asyncio.run(work)
    except ImageRouterError as exc:
        fail(exc)
    except OSError as exc:  # refused, unreachable, a file that cannot be written
        fail(f"{redact_url(url)}: {exc}")
    except Exception as exc:  # asyncpg's errors: a refused login, a missing database…
        fail(f"{redact_url(url)}: {type(exc).__name__}: {exc}")


@click.group()
def db() -> None:
    """The job store's schema: migrate it, or see which migrations it has."""


@db.command("migrate")
@config_option
@store_option
def db_migrate(config_path: str | None, store: str | None) -> None:
    """Apply every pending migration to the job store (safe beside running replicas)."""
    url = _store_url(config_path, store)
    if not is_postgres_url(url):
        _run(_open_sqlite(url), url)
        click.echo(f"SQLite store {url.removeprefix('sqlite://')} is up to date")
        return
    applied = _run(_migrate(url), url)
    latest = migrations.MIGRATIONS[-1].version
    if applied:
        click.echo(
            f"applied migrations {', '.join(f'{v:04d}' for v in applied)} to "
            f"{redact_url(url)}; now at version {latest}"
        )
    else:
        click.echo(f"{redact_url(url)} is up to date (version {latest})")


@db.command("status")
@config_option
@store_option
def db_status(config_path: str | None, store: str | None) -> None:
    """Show the migrations applied to the job store and those pending (exit 1 if any)."""
    url = _store_url(config_path, store)
    if not is_postgres_url(url):
        click.echo("SQLite store: its schema is created and upgraded whenever it is opened")
        return
    found = _run(_status(url), url)
    names = {m.version: m.name for m in migrations.MIGRATIONS}
    for version in sorted({*found.applied, *found.pending}):
        state = "applied" if version in found.applied else "pending"
        if version in found.changed:
            state = "applied (file changed since)"
        click.echo(f"{version:04d}_{names.get(version, '?')}: {state}")
    if found.pending:
        sys.exit(1)
