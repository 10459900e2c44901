"""SQLite group commit waits for the loop's next turn only when the store is busy."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from pathlib import Path

from imagerouter.jobs.sqlite.thread import SQLiteThread


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")


def _insert(n: int):
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return op


async def test_a_busy_store_commits_the_next_turn_with_this_one(tmp_path: Path) -> None:
    """After a transaction of two, work handed over in one turn of the loop waits for the
    next turn's: both commit together (one transaction), and the first is not answered
    before the second was even handed over."""
    thread = SQLiteThread(tmp_path / "g.db", gather_s=5.0)
    await thread.start(_schema)
    try:
        await asyncio.gather(thread.run(_insert(1)), thread.run(_insert(2)))  # a batch of two
        commits = thread.commits
        first = asyncio.ensure_future(thread.run(_insert(3)))
        await asyncio.sleep(0.05)  # many turns of the loop later: the thread still waits
        assert not first.done()
        second = await thread.run(_insert(4))
        assert (await first, second) == (3, 4)
        assert thread.commits == commits + 1
    finally:
        await thread.aclose()


async def test_work_after_a_transaction_of_one_does_not_wait(tmp_path: Path) -> None:
    """A lone op after a lone op is committed at once, however long ``gather_s`` is."""
    thread = SQLiteThread(tmp_path / "g.db", gather_s=30.0)
    await thread.start(_schema)
    try:
        await thread.run(_insert(1))
        await thread.run(_insert(2))
        assert await asyncio.wait_for(thread.run(_insert(3)), timeout=10) == 3
    finally:
        await thread.aclose()


async def test_closing_while_gathering_runs_what_was_queued(tmp_path: Path) -> None:
    """``aclose`` during the wait ends it: the queued work still commits."""
    thread = SQLiteThread(tmp_path / "g.db", gather_s=30.0)
    await thread.start(_schema)
    await asyncio.gather(thread.run(_insert(1)), thread.run(_insert(2)))
    pending = asyncio.ensure_future(thread.run(_insert(3)))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(thread.aclose(), timeout=10)
    assert await pending == 3
    conn = sqlite3.connect(tmp_path / "g.db")
    try:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    finally:
        conn.close()


class _TimedGetWaitsForAPut(queue.SimpleQueue):
    """``SimpleQueue`` as CPython 3.11 to 3.13 behave when a timed ``get``'s time runs out as
    the call begins (the thread preempted between its first try and its wait): the time left
    is negative, which the lock reads as no limit, so the call waits for the next ``put``."""

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        return super().get(block)


async def test_a_busy_store_waits_no_longer_than_gather_s_whatever_the_queue_does(
    tmp_path: Path,
) -> None:
    """The busy store's wait for the loop's next turn ends after ``gather_s`` even where the
    queue's timed ``get`` would wait for a hand-over that never comes: a lone op after a
    batch of two commits though no other work follows it (the writer once relied on that
    ``get``, and held such an op, and every caller waiting on it, until other work came)."""
    thread = SQLiteThread(tmp_path / "g.db", gather_s=0.01)
    thread._queue = _TimedGetWaitsForAPut()
    await thread.start(_schema)
    try:
        await asyncio.gather(thread.run(_insert(1)), thread.run(_insert(2)))  # a batch of two
        assert await asyncio.wait_for(thread.run(_insert(3)), timeout=10) == 3
    finally:
        await thread.aclose()
