"""The threads that work for the event loop (the SQLite writer and its checkpointer, the
storage's file writers) run under Linux's ``SCHED_BATCH`` policy, so that handing them work
does not preempt the loop (:func:`imagerouter.eventloop.helper_thread`); the loop's own thread
keeps the normal policy."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from imagerouter.jobs.ids import new_id
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import NewJob
from imagerouter.storage import open_storage
from imagerouter.storage.config import StorageSettings

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SCHED_BATCH is a Linux scheduling policy"
)


def _policies(prefix: str) -> dict[str, int]:
    """Each live thread whose name starts with ``prefix``: its scheduling policy."""
    return {
        thread.name: os.sched_getscheduler(thread.native_id)
        for thread in threading.enumerate()
        if thread.name.startswith(prefix) and thread.native_id is not None
    }


async def test_the_sqlite_writer_and_its_checkpointer_are_batch_threads(tmp_path: Path) -> None:
    async with SQLiteJobStore(tmp_path / "imagerouter.db") as store:
        account = await store.create_account("acme")
        await store.grant_credits(account.id, 10)
        job = NewJob(new_id("job"), account.id, {"model": "m", "prompt": "p"}, 1, time.time() + 60)
        await store.submit_job(job)
        policies = _policies("sqlite")
    assert set(policies) == {"sqlite:imagerouter.db", "sqlite-checkpoint:imagerouter.db"}
    assert set(policies.values()) == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the loop's thread (this one)


async def test_the_storage_file_writers_are_batch_threads(tmp_path: Path) -> None:
    async with open_storage(StorageSettings(backend="local"), tmp_path) as storage:
        assert storage is not None
        await storage.put("2026-12-06/02/job_a-0.png", b"\x89PNG", "image/png")
        policies = _policies("storage")
    assert policies, "no storage thread ran the write"
    assert set(policies.values()) == {os.SCHED_BATCH}
