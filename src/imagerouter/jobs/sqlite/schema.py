"""The SQLite schema of the job store, and how to create it."""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "create_schema"]

SCHEMA_VERSION = 5

SCHEMA = """
-- Version 5: the windows this process was given (Retry-After cooldowns, receivers' pauses),
-- kept so that a restart holds off until they end.
CREATE TABLE IF NOT EXISTS windows (
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    until   REAL NOT NULL,
    record  TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE IF NOT EXISTS accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at  REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    secret_hash  TEXT NOT NULL,
    name         TEXT,
    created_at   REAL NOT NULL,
    revoked_at   REAL,
    routing      TEXT
);
-- Counted every 0.25 s by each server watching for revocations by other processes.
CREATE INDEX IF NOT EXISTS api_keys_revoked ON api_keys (id) WHERE revoked_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'canceled')),
    request          TEXT NOT NULL,
    price            INTEGER NOT NULL CHECK (price >= 0),
    refunded         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    deadline_at      REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    runs             INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires    REAL,
    result           TEXT,
    error            TEXT,
    idempotency_key  TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (lease_expires) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS jobs_by_account ON jobs (account_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_account_status ON jobs (account_id, status, seq);

CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs(id),
    run          INTEGER NOT NULL,
    provider     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    started_at   REAL,
    latency_ms   REAL,
    error_class  TEXT,
    error        TEXT,
    status       INTEGER,
    retry_after  REAL,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job_id, id);

CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_account ON events (account_id, id);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);

CREATE TABLE IF NOT EXISTS ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    job_id         TEXT,
    kind           TEXT NOT NULL CHECK (kind IN ('grant', 'debit', 'refund')),
    amount         INTEGER NOT NULL,
    balance_after  INTEGER NOT NULL,
    note           TEXT,
    created_at     REAL NOT NULL
);
-- A job is debited once and refunded at most once, whatever races.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_once_per_job ON ledger (job_id, kind)
    WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_by_account ON ledger (account_id, id);

CREATE TABLE IF NOT EXISTS idempotency (
    account_id    TEXT NOT NULL,
    key           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('processing', 'done')),
    job_id        TEXT,
    status_code   INTEGER,
    response      TEXT,
    locked_until  REAL,
    created_at    REAL NOT NULL,
    expires_at    REAL NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at);

-- Webhooks (schema version 2): each account's registered URL and signing secrets, URLs a
-- 410 Gone disabled, one delivery per final job event, and every attempt at sending it.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    account_id  TEXT PRIMARY KEY REFERENCES accounts(id),
    url         TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    -- Schema version 4: the account opted in to job.progress webhooks.
    progress    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS webhook_secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL
);
CREATE INDEX IF NOT EXISTS webhook_secrets_by_account ON webhook_secrets (account_id, id);

CREATE TABLE IF NOT EXISTS webhook_disabled (
    account_id   TEXT NOT NULL,
    url          TEXT NOT NULL,
    disabled_at  REAL NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (account_id, url)
);

CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    event_id         INTEGER NOT NULL UNIQUE,
    event_type       TEXT NOT NULL,
    url              TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'disabled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    step             INTEGER NOT NULL DEFAULT 0,
    replay           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    lease_owner      TEXT,
    lease_expires    REAL,
    body             TEXT,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries (lease_expires)
    WHERE status = 'delivering';
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (job_id);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT NOT NULL REFERENCES deliveries(id),
    attempt          INTEGER NOT NULL,
    trigger          TEXT NOT NULL,
    scheduled_at     REAL NOT NULL,
    started_at       REAL NOT NULL,
    outcome          TEXT NOT NULL,
    status           INTEGER,
    latency_ms       REAL,
    error            TEXT,
    retry_after      REAL,
    next_delay_s     REAL,
    next_attempt_at  REAL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every table and index (idempotent) and stamp the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this imagerouter "
            f"({SCHEMA_VERSION}); upgrade imagerouter"
        )
    conn.executescript(SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(api_keys)")}
    if "routing" not in columns:  # version 3: a key's default routing preferences
        conn.execute("ALTER TABLE api_keys ADD COLUMN routing TEXT")
    _add_column(conn, "webhook_endpoints", "progress", "INTEGER NOT NULL DEFAULT 0")  # v4
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_column(conn: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    """Add ``column`` to a ``table`` created by an older version (CREATE IF NOT EXISTS kept
    its old shape)."""
    names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in names:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
