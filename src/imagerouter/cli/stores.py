"""The job store as ``serve``, ``keys`` and ``credits`` name it in an error, and the check that
a command which only reads or changes a store has one to open.

Opening the embedded SQLite store creates it (its directory too): right for ``serve`` and
``keys create``, which set a data directory up, wrong for ``keys list`` or ``credits grant``,
where a mistyped ``--data-dir`` would leave an empty database behind and report on it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imagerouter.cli.output import fail
from imagerouter.private import redact_url
from imagerouter.server.settings import ServerSettings

__all__ = ["require_existing_store", "shown_store", "sqlite_file", "store_problem"]

SQLITE_SCHEME = "sqlite://"


def sqlite_file(settings: ServerSettings) -> Path | None:
    """The SQLite database the settings name: ``store = "sqlite://…"``'s file, else
    ``imagerouter.db`` in the data directory; None for a PostgreSQL store."""
    if not settings.store:
        return settings.data_dir / "imagerouter.db"
    if settings.store.startswith(SQLITE_SCHEME):
        return Path(settings.store.removeprefix(SQLITE_SCHEME))
    return None


def shown_store(settings: ServerSettings) -> str:
    """The store as an error names it: its URL without the password, or the data directory."""
    return redact_url(settings.store) if settings.store else str(settings.data_dir)


def _read_only(exc: BaseException) -> bool:
    """SQLite refused to write (the file, or the directory its journal goes in, is read-only)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    return isinstance(exc, sqlite3.Error) and name.startswith("SQLITE_READONLY")


def store_problem(settings: ServerSettings, exc: OSError | sqlite3.Error) -> str:
    """One line for a store that could not be opened or written: SQLite's file (or the store)
    and what is wrong with it, saying so plainly when the database cannot be written."""
    file = sqlite_file(settings)
    if file is None or isinstance(exc, OSError):
        return f"{shown_store(settings)}: {exc}"
    if _read_only(exc):
        return (
            f"{file} cannot be written ({exc}): the user running imagerouter needs write "
            "access to it and to its directory"
        )
    return f"{file}: {exc}"


def require_existing_store(settings: ServerSettings) -> None:
    """Exit with status 2 unless the SQLite database the settings name exists (a PostgreSQL
    store is left to its connection to find): for commands that only read or change one."""
    file = sqlite_file(settings)
    if file is not None and not file.is_file():
        fail(
            f"no job store at {file}: is the data directory right? (`imagerouter serve` or "
            "`imagerouter keys create` creates one there)"
        )
