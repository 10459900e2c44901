"""job.progress on both stores: written only while the worker holds the lease (never after the
final event), with a webhook delivery only for an opted-in account; and the recorder that
turns a provider's poll reports into those events: changes only, best effort."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from imagerouter.jobs import JobStore, NewJob
from imagerouter.jobs.progress import ProgressRecorder
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.sqlite.schema import SCHEMA_VERSION
from imagerouter.provider import CallContext, Progress
from tests.polling import eventually

REQUEST = {"model": "gpt-image-2", "prompt": "a lighthouse"}
REPORT = {"provider": "fal", "provider_status": "IN_QUEUE", "queue_position": 4, "log": None}


async def _claimed(store: JobStore, job_id: str = "job_p", owner: str = "w1") -> str:
    account = await store.create_account("acme")
    await store.grant_credits(account.id, 100, "test")
    await store.submit_job(NewJob(job_id, account.id, REQUEST, 10, time.time() + 600))
    [job] = await store.claim_jobs(owner, 1, 30.0)
    assert job.id == job_id
    return account.id


async def _progress_events(store: JobStore, account_id: str, job_id: str = "job_p") -> list:
    return [e for e in await store.events_since(account_id, job_id, 0) if e.type == "job.progress"]


async def test_progress_is_written_only_while_the_lease_is_held(make_store) -> None:
    """The lease holder's report becomes a ``job.progress`` event (the job stays processing);
    another owner's, and any after the job completed, write nothing."""
    store = await make_store()
    account_id = await _claimed(store)
    assert await store.add_progress("job_p", "w1", REPORT) is True
    assert await store.add_progress("job_p", "someone-else", REPORT) is False
    [event] = await _progress_events(store, account_id)
    assert event.data == {"status": "processing", **REPORT}
    assert not event.final
    assert (await store.get_job(account_id, "job_p")).status == "processing"
    assert await store.complete_job("job_p", "w1", {"images": []}, [])
    assert await store.add_progress("job_p", "w1", {**REPORT, "queue_position": 1}) is False
    events = await store.events_since(account_id, "job_p", 0)
    assert [e.type for e in events] == [
        "job.queued",
        "job.processing",
        "job.progress",
        "job.completed",
    ]


async def test_progress_deliveries_only_for_an_opted_in_account(make_store) -> None:
    """With a registered URL but no opt-in, progress enqueues no webhook; once the account
    opts in, it does (the final event's still comes last). Registering a URL with
    ``progress=None`` keeps the account's choice; False turns it off."""
    store = await make_store()
    account_id = await _claimed(store)
    endpoint = await store.set_webhook_url(account_id, "https://example.test/hook")
    assert endpoint.progress is False
    assert await store.add_progress("job_p", "w1", REPORT)
    assert await store.job_deliveries(account_id, "job_p") == []
    endpoint = await store.set_webhook_url(account_id, "https://example.test/hook", progress=True)
    assert endpoint.progress is True
    assert (await store.set_webhook_url(account_id, "https://example.test/h2")).progress is True
    assert await store.add_progress("job_p", "w1", {**REPORT, "queue_position": 2})
    assert await store.complete_job("job_p", "w1", {"images": []}, [])
    deliveries = await store.job_deliveries(account_id, "job_p")
    assert [d.event_type for d in deliveries] == ["job.progress", "job.completed"]
    assert deliveries[0].url == "https://example.test/h2"
    off = await store.set_webhook_url(account_id, "https://example.test/h2", progress=False)
    assert off.progress is False


async def test_the_recorder_keeps_changes_and_at_most_one_per_interval(make_store) -> None:
    """Repeated reports of the same status and position write one event; a change writes
    another; within the interval, newer reports replace the waiting one, which is dropped when
    the job ends."""
    store = await make_store()
    account_id = await _claimed(store)
    recorder = ProgressRecorder(store, "job_p", "w1", min_interval_s=0.0)
    recorder("fal", Progress("IN_QUEUE", 5))
    await eventually(lambda: recorder.written == 1, what="the first progress event")
    for _ in range(20):
        recorder("fal", Progress("IN_QUEUE", 5, "still waiting"))  # same status and position
    recorder("fal", Progress("IN_QUEUE", 3))
    await eventually(lambda: recorder.written == 2, what="the second progress event")
    await recorder.aclose()
    slow = ProgressRecorder(store, "job_p", "w1", min_interval_s=3600.0)
    slow("fal", Progress("IN_PROGRESS", None, "Generating image"))
    await eventually(lambda: slow.written == 1, what="the slow recorder's first event")
    slow("fal", Progress("COMPLETED"))  # inside the interval: waits, then is dropped
    await slow.aclose()
    events = await _progress_events(store, account_id)
    assert [(e.data["provider_status"], e.data["queue_position"]) for e in events] == [
        ("IN_QUEUE", 5),
        ("IN_QUEUE", 3),
        ("IN_PROGRESS", None),
    ]
    assert events[-1].data["log"] == "Generating image"


async def test_a_job_over_within_the_first_delay_writes_no_progress(make_store) -> None:
    """A job whose provider answers inside ``first_delay_s`` (its first poll said the queue
    was done) writes no progress event; one still running after it writes the newest report
    it had, once."""
    store = await make_store()
    account_id = await _claimed(store)
    quick = ProgressRecorder(store, "job_p", "w1", first_delay_s=3600.0)
    quick("fal", Progress("COMPLETED"))
    await quick.aclose()
    assert quick.written == 0
    slow = ProgressRecorder(store, "job_p", "w1", min_interval_s=3600.0, first_delay_s=0.05)
    slow("fal", Progress("IN_QUEUE", 7))
    slow("fal", Progress("IN_QUEUE", 6))  # during the first wait: replaces the report
    await eventually(lambda: slow.written == 1, what="the delayed first event")
    await slow.aclose()
    events = await _progress_events(store, account_id)
    assert [(e.data["provider_status"], e.data["queue_position"]) for e in events] == [
        ("IN_QUEUE", 6)
    ]


async def test_a_store_error_while_recording_progress_is_logged_and_ignored(
    make_store, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails (here: closed) costs the report, never the job: nothing raises."""
    store = await make_store()
    await _claimed(store)
    await store.aclose()
    recorder = ProgressRecorder(store, "job_p", "w1", min_interval_s=0.0)
    with caplog.at_level(logging.WARNING, logger="imagerouter.jobs.progress"):
        recorder("fal", Progress("IN_QUEUE", 2))
        await eventually(
            lambda: "writing a progress event failed" in caplog.text, what="the logged failure"
        )
    await recorder.aclose()
    assert recorder.written == 0


def test_call_context_progress_is_a_safe_no_op_hook() -> None:
    """Without a listener, ``ctx.progress`` does nothing; a listener that raises is logged,
    not passed on; reports are trimmed to a short line."""
    ctx = CallContext(session=None, provider_model="m", deadline=0.0)  # type: ignore[arg-type]
    ctx.progress("IN_QUEUE", 3, "log")
    heard: list[Progress] = []
    ctx.on_progress = heard.append
    ctx.progress("IN_PROGRESS", None, "  " + "x" * 500 + "  ")
    ctx.progress("IN_QUEUE", "7", "")  # type: ignore[arg-type]  # a provider's odd position
    assert heard[0].status == "IN_PROGRESS"
    assert heard[0].log == "x" * 200
    assert heard[1] == Progress("IN_QUEUE", None, None)

    def broken(report: Progress) -> None:
        raise RuntimeError("listener bug")

    ctx.on_progress = broken
    ctx.progress("IN_QUEUE", 1)  # does not raise


OLD_WEBHOOKS = """
CREATE TABLE accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0), created_at REAL NOT NULL
);
CREATE TABLE webhook_endpoints (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id), url TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
INSERT INTO accounts VALUES ('acc_1', 'acme', 0, 1.0);
INSERT INTO webhook_endpoints VALUES ('acc_1', 'https://example.test/hook', 1.0, 1.0);
PRAGMA user_version = 3;
"""


async def test_an_older_sqlite_database_gains_the_progress_opt_in(tmp_path: Path) -> None:
    """A version-3 database had no ``webhook_endpoints.progress``: opening adds it, off for
    the registration already there, and the account can opt in."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_WEBHOOKS)
    async with SQLiteJobStore(db) as store:
        endpoint = await store.get_webhook("acc_1")
        assert endpoint is not None
        assert endpoint.progress is False
        on = await store.set_webhook_url("acc_1", "https://example.test/hook", progress=True)
        assert on.progress is True
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
