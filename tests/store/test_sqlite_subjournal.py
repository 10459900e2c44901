"""The SQLite writer's savepoint journals stay in memory: a large op opens no temporary file,
and the one op that could grow without bound (the purge of expired keys) is cut into steps."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from imagerouter.clock import FakeClock
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.sqlite.thread import SQLiteThread

#: SQLite names its temporary files (a spilled sub-journal among them) ``etilqs_…``.
TEMP_PREFIX = "etilqs_"

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the check lists /proc/self/fd (Linux only)"
)


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER, pad TEXT)")


def _fill(conn: sqlite3.Connection) -> int:
    conn.executemany("INSERT INTO t VALUES (?, ?)", ((n, "x" * 500) for n in range(2000)))
    return 2000


def _temp_files_open() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if TEMP_PREFIX in target:
            found.append(target)
    return found


def _rewrite_all(conn: sqlite3.Connection) -> tuple[int, list[str]]:
    """Change every page of ``t`` (about 1 MB, far past SQLite's 64 KiB spill threshold for a
    sub-journal held in memory), then look for SQLite's temporary files while the savepoint
    still holds the originals."""
    changed = conn.execute("UPDATE t SET pad = pad || 'y'").rowcount
    return changed, _temp_files_open()


@linux_only
async def test_a_large_op_spills_no_sub_journal_to_disk(tmp_path: Path) -> None:
    """Every op runs in a savepoint: past 64 KiB of changed pages SQLite would move the
    savepoint's journal into a temporary file (created, written and deleted in each such
    batch); the writer keeps it in memory, and the op still commits."""
    thread = SQLiteThread(tmp_path / "s.db")
    await thread.start(_schema)
    try:
        assert await thread.run(_fill) == 2000
        changed, temp_files = await thread.run(_rewrite_all)
        assert changed == 2000
        assert temp_files == []
        pads = await thread.run(lambda c: c.execute("SELECT min(length(pad)) FROM t").fetchone())
        assert pads == (501,)
    finally:
        await thread.aclose()


async def test_a_backlog_of_expired_keys_is_purged_one_bounded_op_at_a_time(
    tmp_path: Path,
) -> None:
    """The purge of expired idempotency keys deletes at most ``purge_batch`` a op, so a day of
    keys found expired neither holds the writer in one op nor fills its journal."""
    clock = FakeClock()
    async with SQLiteJobStore(tmp_path / "p.db", clock=clock) as store:
        store.purge_batch = 10
        account = await store.create_account("acme")
        for n in range(45):
            await store.idempotency_begin(account.id, f"k-{n}", "fp", 30, 60)
        clock.advance(61)
        ops = store.thread.ops
        assert await store.purge_idempotency() == 45
        assert store.thread.ops - ops == 5  # 10, 10, 10, 10, 5
