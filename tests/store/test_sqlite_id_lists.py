"""How the SQLite store binds lists. Ids go into ``IN (…)`` lists at most
``IDS_PER_STATEMENT`` at a time: a lease renewal of more jobs than that still renews every one,
and only those this worker holds. Rows go into multi-row statements of a power of two of rows
(:func:`~imagerouter.jobs.sqlite.base.row_counts`), so a table has few statement shapes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.sqlite.base import IDS_PER_STATEMENT, execute_rows, id_chunks, row_counts
from imagerouter.jobs.types import NewJob


def test_id_chunks_cover_every_id_once_with_their_placeholders() -> None:
    ids = [f"job_{n}" for n in range(2 * IDS_PER_STATEMENT + 3)]
    chunks = list(id_chunks(ids))
    assert [len(chunk) for chunk, _ in chunks] == [IDS_PER_STATEMENT, IDS_PER_STATEMENT, 3]
    assert [i for chunk, _ in chunks for i in chunk] == ids
    assert all(marks.count("?") == len(chunk) for chunk, marks in chunks)
    assert list(id_chunks([])) == []


async def test_a_renewal_past_one_statement_renews_every_held_lease(tmp_path: Path) -> None:
    count = IDS_PER_STATEMENT + 20
    async with SQLiteJobStore(tmp_path / "l.db") as store:
        account = await store.create_account("acme")
        await store.grant_credits(account.id, 10 * count)
        ids = [f"job_{n:04d}" for n in range(count)]
        for job_id in ids:
            await store.submit_job(
                NewJob(
                    job_id,
                    account.id,
                    {"model": "gpt-image-2", "prompt": "x"},
                    1,
                    time.time() + 600,
                )
            )
        claimed = await store.claim_jobs("w1", count, 30)
        assert len(claimed) == count
        held = await store.renew_leases("w1", [*ids, "job_unknown"], 60)
        assert held == set(ids)
        assert await store.renew_leases("w2", ids, 60) == set()


def test_multi_row_statements_hold_a_power_of_two_of_rows() -> None:
    """Seven statement shapes a table at most, each a power of two of rows up to 64, and every
    row written once, in order."""
    assert list(row_counts(100)) == [64, 32, 4]
    assert list(row_counts(200)) == [64, 64, 64, 8]
    assert list(row_counts(0)) == []
    assert {n for rows in range(1, 300) for n in row_counts(rows)} == {1, 2, 4, 8, 16, 32, 64}
    assert all(sum(row_counts(rows)) == rows for rows in range(300))


def test_execute_rows_writes_every_row_in_order() -> None:
    """100 rows go in as statements of 64, 32 and 4 rows, in order."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (n INTEGER, label TEXT)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    params = [value for n in range(100) for value in (n, f"row {n}")]
    execute_rows(conn, "INSERT INTO t (n, label) VALUES ", "(?, ?)", params)
    conn.set_trace_callback(None)
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("'row ") for s in inserts] == [64, 32, 4]
    assert conn.execute("SELECT n, label FROM t ORDER BY rowid").fetchall() == [
        (n, f"row {n}") for n in range(100)
    ]
