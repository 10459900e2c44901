"""An SQLite store written by the previous schema version opens and is upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imagerouter.auth import Authenticator, mint_key
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.sqlite.schema import SCHEMA_VERSION

V2_KEYS = """
CREATE TABLE accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0), created_at REAL NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
    secret_hash TEXT NOT NULL, name TEXT, created_at REAL NOT NULL, revoked_at REAL
);
PRAGMA user_version = 2;
"""


async def test_a_version_2_database_gains_key_routing(tmp_path: Path) -> None:
    """Version 2 had no ``api_keys.routing``: opening adds it, and a key stores defaults."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(V2_KEYS)
    async with SQLiteJobStore(db) as store:
        account = await store.create_account("acme")
        minted = mint_key(account.id, "k", 1.0, '{"sort":"price"}')
        await store.create_api_key(minted.record)
        principal = await Authenticator(store, cache_s=0).authenticate(f"Bearer {minted.token}")
        assert principal.routing == '{"sort":"price"}'
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
