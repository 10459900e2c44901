"""SQLite binds ids into ``IN (…)`` lists at most ``IDS_PER_STATEMENT`` at a time: a lease
renewal of more jobs than that still renews every one, and only those this worker holds."""

from __future__ import annotations

import time
from pathlib import Path

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.sqlite.base import IDS_PER_STATEMENT, id_chunks
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
