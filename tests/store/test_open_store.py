"""Choosing the store: ``[server] store`` / ``IMAGEROUTER_SERVER_STORE`` and ``open_store``."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from imagerouter.jobs.backends import open_store
from imagerouter.jobs.postgres import PostgresJobStore, parse_url, redact_url
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.server.settings import load_server_settings


def test_store_and_state_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    """The config file's ``[server] store``/``state`` are read, and the environment wins."""
    config = tmp_path / "imagerouter.toml"
    config.write_text(
        '[server]\nstore = "postgresql://db.example/ir"\nstate = "redis://cache.example:6379/1"\n'
    )
    settings = load_server_settings(config, environ={})
    assert (settings.store, settings.state) == (
        "postgresql://db.example/ir",
        "redis://cache.example:6379/1",
    )
    env = {"IMAGEROUTER_SERVER_STORE": "postgresql://other.example/ir?schema=blue"}
    assert load_server_settings(config, environ=env).store == env["IMAGEROUTER_SERVER_STORE"]
    assert load_server_settings(None, environ={}).store is None


def test_a_store_url_of_another_kind_is_refused() -> None:
    """A store that is not postgresql:// or sqlite:// is a config error naming where it was
    set (here the variable)."""
    with pytest.raises(ConfigError, match=r"^IMAGEROUTER_SERVER_STORE: "):
        load_server_settings(None, environ={"IMAGEROUTER_SERVER_STORE": "mysql://db/ir"})
    with pytest.raises(ConfigError, match=r"^IMAGEROUTER_SERVER_STATE: "):
        load_server_settings(None, environ={"IMAGEROUTER_SERVER_STATE": "http://cache"})


def test_open_store_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    """postgresql:// opens PostgreSQL (schema and pool from the query), a directory or
    sqlite:// opens SQLite, anything else is refused."""
    store = open_store("postgresql://u:secret@db.example:5432/ir?schema=blue&pool_max=3")
    assert isinstance(store, PostgresJobStore)
    assert (store.schema, store.pool_max) == ("blue", 3)
    assert "secret" not in repr(store)
    assert parse_url("postgresql://db/ir?schema=x&sslmode=require") == (
        "postgresql://db/ir?sslmode=require",
        {"schema": "x"},
    )
    assert redact_url("postgresql://u:pw@db:5432/ir") == "postgresql://u:***@db:5432/ir"
    assert isinstance(open_store(tmp_path), SQLiteJobStore)
    assert isinstance(open_store(f"sqlite://{tmp_path / 'x.db'}"), SQLiteJobStore)
    with pytest.raises(ValueError, match="unknown job store"):
        open_store("mysql://db/ir")
