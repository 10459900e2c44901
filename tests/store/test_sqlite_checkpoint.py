"""The SQLite store checkpoints its write-ahead log on a thread of its own, not inside the
commits of the write thread (:mod:`imagerouter.jobs.sqlite.checkpoint`)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from imagerouter.jobs.ids import new_id
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import NewJob
from tests.polling import eventually


def _jobs_in_the_database_file(path: Path) -> int:
    """Jobs in the main database file alone, the WAL ignored (``immutable``: what a checkpoint
    has copied back)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    except sqlite3.OperationalError:  # not even the schema is there yet
        return -1
    finally:
        conn.close()


async def test_commits_reach_the_database_file_while_the_store_runs(tmp_path: Path) -> None:
    """A few commits, far below the writer's own automatic checkpoint, are copied from the WAL
    into the database file by the checkpoint thread while the store stays open."""
    path = tmp_path / "imagerouter.db"
    store = SQLiteJobStore(path)
    await store.start()
    try:
        account = await store.create_account("acme")
        await store.grant_credits(account.id, 1000)
        request = {"model": "gpt-image-2", "prompt": "a lighthouse"}
        jobs = [NewJob(new_id("job"), account.id, request, 1, time.time() + 600) for _ in range(30)]
        await asyncio.gather(*(store.submit_job(job) for job in jobs))
        await eventually(
            lambda: _jobs_in_the_database_file(path) == 30, what="the jobs checkpointed"
        )
    finally:
        await store.aclose()
