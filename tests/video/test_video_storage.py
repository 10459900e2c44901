"""Video outputs are streamed into storage: to local disk (a temporary file renamed into
place) and to S3 as a multipart upload through boto3's transfer manager (a real SeaweedFS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from imagerouter.server.keys import storage_key
from imagerouter.storage import LocalStorage
from imagerouter.storage.base import StorageError
from mockproviders import Farm, load_scenario
from mockproviders.scenario import VideoSettings
from tests.delivery.seaweed import Seaweed, run_seaweed
from tests.helpers.api import ApiFactory
from tests.helpers.outputs import expected_key
from tests.video.mp4check import parse_mp4

#: 8 s of Veo at this rate is 12 MiB: above the 8 MiB multipart threshold.
BYTES_PER_SECOND = 1536 * 1024
VEO = {"model": "veo3-fast", "prompt": "a heron takes off from a misty lake"}
S3_SECRET = "test-secret-video-0815"


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    """A farm whose videos are padded to BYTES_PER_SECOND a second."""
    scenario = load_scenario("default").model_copy(
        update={"videos": VideoSettings(bytes_per_second=BYTES_PER_SECOND)}
    )
    async with Farm(scenario=scenario) as running:
        yield running


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS S3 server for this module."""
    with run_seaweed(tmp_path_factory.mktemp("s3")) as running:
        yield running


async def test_a_large_video_lands_in_s3_as_a_multipart_upload(
    make_api: ApiFactory, seaweed: Seaweed
) -> None:
    """12 MiB of video: the presigned URL serves the whole MP4; the object's ETag is a
    multipart one (``…-2``: two 8 MiB-or-less parts)."""
    api = await make_api(storage=seaweed.storage("videos/", S3_SECRET))
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", VEO)
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "completed", job
    video = job["result"]["images"][0]
    key = f"videos/{expected_key(job, 0, 'mp4')}"
    assert video["url"].startswith(f"{seaweed.endpoint}/{seaweed.bucket}/{key}?")
    async with aiohttp.ClientSession() as session, session.get(video["url"]) as answer:
        assert answer.status == 200
        data = await answer.read()
    assert len(data) == 8 * BYTES_PER_SECOND
    assert parse_mp4(data).seconds == 8
    s3 = seaweed.client(S3_SECRET)
    head = s3.head_object(Bucket=seaweed.bucket, Key=key)
    assert head["ContentType"] == "video/mp4"
    assert head["ETag"].strip('"').endswith("-2")


async def test_a_video_above_the_size_cap_fails_the_job_and_refunds_it(
    make_api: ApiFactory,
) -> None:
    """max_video_bytes below the video's size: output_storage_failed, refunded, nothing kept."""
    api = await make_api(storage={"max_video_bytes": 4 * 1024 * 1024})
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", VEO)
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "output_storage_failed"
    assert job["credits"]["refunded"] == job["credits"]["charged"] == 288
    root = api.app[storage_key].root
    assert not [path for path in root.rglob("*") if path.is_file()]


async def test_a_cut_stream_leaves_no_file_behind(tmp_path: Path) -> None:
    """An error from the chunks (a cap, a reset) stores nothing, temporary file included."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.sleep(0)
        raise StorageError("output 0 is larger than 1500 bytes")

    with ThreadPoolExecutor(2) as pool:
        storage = LocalStorage(tmp_path / "media", b"k" * 32, pool)
        with pytest.raises(StorageError, match="larger than"):
            await storage.put_stream("job_a/0.mp4", chunks(), "video/mp4")

        async def whole() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"y" * 70_000

        assert await storage.put_stream("job_b/0.mp4", whole(), "video/mp4") == 210_000
    assert sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file()) == ["0.mp4"]
    assert (tmp_path / "media" / "job_b" / "0.mp4").stat().st_size == 210_000
