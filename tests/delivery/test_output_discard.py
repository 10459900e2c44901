"""Outputs stored for a job that then ends without them are removed, and a cancelled write
cannot land after the removal.

A storage pool thread goes on writing after the coroutine that handed it the write was
cancelled. These tests hold the pool's one thread on purpose (a task waiting on an event, or
a read of a FIFO nobody writes yet) so that a write is in the pool, not yet done, when its
job is canceled: the removal must wait for it, whatever the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imagerouter.jobs.types import Job
from imagerouter.server.keys import storage_key, store_key, workers_key
from imagerouter.storage import LocalStorage, S3Storage, StorageSettings
from imagerouter.storage.base import StorageError
from imagerouter.storage.outputs import OutputStore
from imagerouter.storage.spool import spool
from tests.delivery.conftest import Api, ApiFactory
from tests.delivery.seaweed import Seaweed, run_seaweed
from tests.helpers.outputs import expected_key
from tests.polling import eventually

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
S3_SECRET = "discard-secret-0815"


@contextlib.contextmanager
def held_pool() -> Iterator[tuple[ThreadPoolExecutor, threading.Event]]:
    """A one-thread pool whose thread waits for the event (set on exit at the latest)."""
    release = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        try:
            executor.submit(release.wait, 30)
            yield executor, release
        finally:
            release.set()


def _no_session() -> aiohttp.ClientSession:
    raise AssertionError("inline images need no download")


def a_job(job_id: str = "job_discard") -> Job:
    now = time.time()
    return Job(job_id, "acct_1", "processing", {}, 1, 0, now, now, now + 60)


async def test_delete_removes_the_files_and_skips_keys_with_none(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as executor:
        storage = LocalStorage(tmp_path / "media", b"k" * 32, executor)
        await storage.put("h/a-0.png", PNG, "image/png")
        await storage.put("h/a-1.png", PNG, "image/png")

        await storage.delete(["h/a-0.png", "h/never-written.png"])

        assert not storage.path("h/a-0.png").exists()
        assert storage.path("h/a-1.png").read_bytes() == PNG
        with pytest.raises(ValueError, match="invalid storage key"):
            await storage.delete(["../outside.png"])


async def cancel_held_write_and_delete(
    storage: LocalStorage | S3Storage, key: str
) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """Put ``key`` while the pool's thread is held, cancel the put once its write is in the
    pool, and start deleting ``key``: the delete must wait, since the write has not ended."""
    put = asyncio.create_task(storage.put(key, PNG, "image/png"))
    await eventually(lambda: key in storage.writes, what=f"the write of {key} in the pool")
    put.cancel()
    delete = asyncio.create_task(storage.delete([key]))
    for _ in range(20):  # the write cannot start while the thread is held
        await asyncio.sleep(0)
    assert not delete.done()
    return put, delete


async def test_a_cancelled_write_in_the_pool_ends_before_the_delete(tmp_path: Path) -> None:
    with held_pool() as (executor, release):
        storage = LocalStorage(tmp_path / "media", b"k" * 32, executor)
        put, delete = await cancel_held_write_and_delete(storage, "h/b-0.png")

        release.set()
        await delete

        assert "h/b-0.png" not in storage.writes  # the write ended, and before the unlink
        assert not storage.path("h/b-0.png").exists()
        assert put.cancelled()


async def test_a_write_cancelled_before_a_writer_took_it_is_not_made(tmp_path: Path) -> None:
    with held_pool() as (executor, release):
        storage = LocalStorage(tmp_path / "media", b"k" * 32, executor)
        first = asyncio.create_task(storage.put("h/c-0.png", PNG, "image/png"))
        await eventually(lambda: "h/c-0.png" in storage.writes, what="the first write")
        second = asyncio.create_task(storage.put("h/c-1.png", PNG, "image/png"))
        await eventually(lambda: "h/c-1.png" in storage.writes, what="the second write")
        late = asyncio.create_task(storage.put("h/c-2.png", PNG, "image/png"))
        for _ in range(20):  # both writers are busy: the third waits for one
            await asyncio.sleep(0)
        assert "h/c-2.png" not in storage.writes
        late.cancel()

        release.set()
        await asyncio.gather(first, second)
        await storage.flush()

        assert storage.path("h/c-0.png").read_bytes() == PNG
        assert storage.path("h/c-1.png").read_bytes() == PNG
        assert not storage.path("h/c-2.png").exists()


async def test_a_cancelled_spool_closes_its_file_once_the_pool_is_done_with_it(
    tmp_path: Path,
) -> None:
    """A video's stream cut by a cancel: the temporary file is removed and its descriptor
    closed, after the chunk being written, never under it."""
    target = tmp_path / "video.part"
    fds_before = len(os.listdir("/proc/self/fd"))
    arrived = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk"
        arrived.set()
        yield b"second chunk"
        await asyncio.sleep(30)  # the stream stalls; the job is canceled meanwhile
        yield b"never"

    with ThreadPoolExecutor(1) as executor:
        writing = asyncio.create_task(spool(chunks(), target, executor))
        await arrived.wait()
        await eventually(lambda: target.exists(), what="the temporary file")
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
    assert not target.exists()
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_one_image_failing_leaves_the_others_stored_for_the_caller_to_discard(
    tmp_path: Path,
) -> None:
    """Of two images, one without data fails the store, raised only once the other is
    written; its key is among those ``started``, which :meth:`discard` removes."""
    with ThreadPoolExecutor(2) as executor:
        storage = LocalStorage(tmp_path / "media", b"k" * 32, executor)
        outputs = OutputStore(storage, _no_session, StorageSettings())
        images = [{"b64_json": "iVBORw0KGgo=", "content_type": "image/png"}, {"width": 2}]
        started: list[str] = []

        with pytest.raises(StorageError, match="image 1 has neither a URL nor base64 data"):
            await outputs(a_job(), {"images": images}, started)

        [key] = started
        assert key not in storage.writes  # written, not still in the pool
        assert storage.path(key).read_bytes() == b"\x89PNG\r\n\x1a\n"
        await outputs.discard(started)
        assert not storage.path(key).exists()


@dataclass
class HeldImage:
    """A job whose image's write is in the storage pool, whose one thread is held."""

    token: str
    job: dict[str, Any]
    key: str
    fifo: Path
    reading: asyncio.Task[bytes]

    async def release(self) -> None:
        """Let the pool's thread go on (the FIFO's reader gets an empty file)."""
        await asyncio.to_thread(lambda: open(self.fifo, "wb").close())
        assert await self.reading == b""


async def hold_a_jobs_image(api: Api, storage: LocalStorage) -> HeldImage:
    """Hold the storage pool's one thread (a read of a FIFO that nobody writes yet), submit a
    job, and wait until its image's write is in the pool, behind the read."""
    fifo = storage.path("held/fifo.png")
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    reading = asyncio.create_task(storage.get("held/fifo.png"))
    token = await api.key(credits=100)
    job = await api.submit(token)
    key = expected_key(job, 0, "png")
    await eventually(lambda: key in storage.writes, what="the job's image in the pool")
    return HeldImage(token, job, key, fifo, reading)


async def test_a_job_canceled_while_its_image_is_being_written_keeps_no_file(
    make_api: ApiFactory,
) -> None:
    """Through the job API: the storage pool's one thread is held, so the job's image is in
    the pool when its client cancels it. Once the worker is done with the job, the file is
    not there: the worker removed it after the write ended."""
    api = await make_api(storage={"backend": "local", "threads": 1})
    storage = api.app[storage_key]
    assert isinstance(storage, LocalStorage)
    held = await hold_a_jobs_image(api, storage)
    job, key, token = held.job, held.key, held.token

    status, canceled = await api.call("DELETE", f"/v1/jobs/{job['id']}", token)
    assert status == 200
    assert canceled["status"] == "canceled"
    await held.release()
    pool = api.app[workers_key]
    await eventually(lambda: pool.running == 0, what="the worker to be done with the job")
    await storage.flush()  # whatever was still to be written has been

    assert not storage.path(key).exists()
    assert key not in storage.writes
    status, body = await api.call("GET", f"/v1/jobs/{job['id']}", token)
    assert (status, body["status"], body["result"]) == (200, "canceled", None)


async def test_a_job_canceled_through_another_replica_keeps_no_file(
    make_api: ApiFactory,
) -> None:
    """The whole lost-lease run: the job is canceled in the store, as another replica's API
    would cancel it, while its image is in the held pool. This process is not told: its
    heartbeat finds the lease gone and cancels the run, which does not know how the job
    ended, reads it (canceled), and removes the image once its write has ended."""
    api = await make_api(storage={"backend": "local", "threads": 1}, heartbeat_s=0.05)
    storage, store, pool = api.app[storage_key], api.app[store_key], api.app[workers_key]
    assert isinstance(storage, LocalStorage)
    held = await hold_a_jobs_image(api, storage)
    job, key, token = held.job, held.key, held.token
    account_id = (await api.call("GET", "/v1/account", token))[1]["id"]

    await store.cancel_job(account_id, job["id"])  # not through this process's pool
    await eventually(
        lambda: pool._cancel_reasons.get(job["id"]) == "lost",
        what="the heartbeat to find the lease lost",
    )
    assert key in storage.writes  # the removal waits for the write
    await held.release()
    await eventually(lambda: pool.running == 0, what="the worker to be done with the job")
    await storage.flush()

    assert not storage.path(key).exists()
    status, body = await api.call("GET", f"/v1/jobs/{job['id']}", token)
    assert (status, body["status"], body["result"]) == (200, "canceled", None)


async def test_a_completed_jobs_image_stays(make_api: ApiFactory) -> None:
    api = await make_api(storage={"backend": "local", "threads": 1})
    storage = api.app[storage_key]
    token = await api.key(credits=100)
    job = await api.submit(token)
    done = await api.wait_final(token, job["id"])
    assert done["status"] == "completed"
    assert storage.path(expected_key(done, 0, "png")).exists()


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS S3 server for this module, with bucket ``images``."""
    with run_seaweed(tmp_path_factory.mktemp("s3")) as running:
        yield running


async def test_s3_delete_waits_for_a_cancelled_upload_then_removes_it(seaweed: Seaweed) -> None:
    settings = StorageSettings.model_validate(seaweed.storage("discard/", S3_SECRET))
    s3 = seaweed.client(S3_SECRET)
    with ThreadPoolExecutor(1) as executor:
        async with S3Storage(settings, executor) as storage:
            await storage.put("h/kept.png", PNG, "image/png")
            await storage.put("h/gone.png", PNG, "image/png")
            await storage.delete(["h/gone.png", "h/never-written.png"])
            listed = s3.list_objects_v2(Bucket=seaweed.bucket, Prefix="discard/")
            assert [o["Key"] for o in listed["Contents"]] == ["discard/h/kept.png"]

            release = threading.Event()
            executor.submit(release.wait, 30)
            try:
                _, delete = await cancel_held_write_and_delete(storage, "h/late.png")
            finally:
                release.set()
            await delete
            assert "h/late.png" not in storage.writes
            listed = s3.list_objects_v2(Bucket=seaweed.bucket, Prefix="discard/h/late")
            assert listed.get("KeyCount", 0) == 0


async def test_without_knowing_how_the_job_ended_the_worker_asks_the_store(
    make_api: ApiFactory,
) -> None:
    """A run that lost its lease (or whose completion was refused) does not know how its
    job ended: the worker reads the job, and removes the run's outputs only if it is failed
    or canceled. A job still queued (handed back, to run again) keeps them, since its next
    run writes the same keys."""
    api = await make_api(workers=0)
    storage, store, pool = api.app[storage_key], api.app[store_key], api.app[workers_key]
    token = await api.key(credits=100)
    canceled, queued = await api.submit(token), await api.submit(token)
    keys = {job["id"]: expected_key(job, 0, "png") for job in (canceled, queued)}
    for key in keys.values():
        await storage.put(key, PNG, "image/png")  # as each job's run stored its image
    status, _ = await api.call("DELETE", f"/v1/jobs/{canceled['id']}", token)
    assert status == 200
    account_id = (await api.call("GET", "/v1/account", token))[1]["id"]

    for job_id, key in keys.items():
        job = await store.get_job(account_id, job_id, with_attempts=False)
        await pool._drop_outputs(job, [key])

    assert not storage.path(keys[canceled["id"]]).exists()
    assert storage.path(keys[queued["id"]]).read_bytes() == PNG
