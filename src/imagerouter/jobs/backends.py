"""Which backend a store URL names, and the store it opens.

Kept apart from :mod:`imagerouter.jobs.store`, so that the contract imports no backend and the
backends import the contract, never the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.store import JobStore
from imagerouter.private import redact_url

__all__ = ["open_sqlite_store", "open_store"]


def open_sqlite_store(data_dir: str | Path, **options: Any) -> JobStore:
    """The embedded default: SQLite (WAL) at ``data_dir/imagerouter.db``, unstarted."""
    return SQLiteJobStore(Path(data_dir) / "imagerouter.db", **options)


def open_store(url_or_dir: str | Path, **options: Any) -> JobStore:
    """The store a URL names: ``postgresql://…`` (shared by replicas; see
    :mod:`imagerouter.jobs.postgres`), ``sqlite:///path/to/file.db``, or a data directory
    (SQLite at ``imagerouter.db`` in it). Use it with ``async with``."""
    text = str(url_or_dir)
    if text.startswith(("postgresql://", "postgres://")):
        # asyncpg is imported only when a PostgreSQL store is asked for.
        from imagerouter.jobs.postgres import PostgresJobStore

        return PostgresJobStore(text, **options)
    if text.startswith("sqlite://"):
        return SQLiteJobStore(text.removeprefix("sqlite://"), **options)
    if "://" in text:
        raise ValueError(
            f"unknown job store {redact_url(text)!r}: use postgresql://… or a data directory"
        )
    return open_sqlite_store(text, **options)
