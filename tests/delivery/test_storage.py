"""Finished images are re-hosted: on local disk behind signed URLs, or in S3 (SeaweedFS)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from imagerouter.server.keys import settings_key, storage_key
from imagerouter.storage import LocalStorage
from mockproviders.images import image_digest, render_png
from tests.delivery.conftest import Api, ApiFactory
from tests.delivery.seaweed import Seaweed, run_seaweed
from tests.helpers.outputs import expected_key

PROMPT, SEED = "a red fox in snow", 7
S3_SECRET = "test-secret-value-4711"


def farm_png(index: int, size: int = 1024) -> bytes:
    """The bytes the farm paints for image ``index`` of PROMPT at SEED."""
    return render_png(image_digest(PROMPT, SEED, size, size, index), size, size)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS S3 server for this module, with bucket ``images``."""
    with run_seaweed(tmp_path_factory.mktemp("s3")) as running:
        yield running


async def test_local_urls_download_the_image_and_refuse_tampering(api: Api) -> None:
    """Both images of a job download from their signed local URLs byte for byte; a changed
    signature, path or expiry, or an expired URL, is a 403 saying which."""
    token = await api.key()
    job = await api.submit(token, prompt=PROMPT, seed=SEED, n=2)
    done = await api.wait_final(token, job["id"])
    assert done["status"] == "completed", done
    assert "storage" not in done["result"]
    urls = [image["url"] for image in done["result"]["images"]]
    keys = [expected_key(done, index, "png") for index in range(2)]
    for index, url in enumerate(urls):
        assert url.startswith(f"/v1/media/{keys[index]}?")
        answer = await api.client.get(url)
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "image/png"
        assert await answer.read() == farm_png(index)
        # HEAD, as CDNs and link checkers send it first: the same answer without the body
        head = await api.client.head(url)
        assert head.status == 200
        assert head.headers["Content-Type"] == "image/png"
        assert int(head.headers["Content-Length"]) == len(farm_png(index))
        assert await head.read() == b""
    query = parse_qs(urlsplit(urls[0]).query)
    expires, sig = query["expires"][0], query["sig"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    tampered = {
        "signature": f"/v1/media/{keys[0]}?expires={expires}&sig={flipped}",
        "path": f"/v1/media/{keys[1]}?expires={expires}&sig={sig}",
        "expiry": f"/v1/media/{keys[0]}?expires={int(expires) + 1}&sig={sig}",
        "missing": f"/v1/media/{keys[0]}",
    }
    for what, url in tampered.items():
        answer = await api.client.get(url)
        body = await answer.json()
        assert answer.status == 403, what
        assert body["error"]["code"] == "invalid_signature", what
        assert (await api.client.head(url)).status == 403, what
    storage = api.app[storage_key]
    assert isinstance(storage, LocalStorage)
    assert storage.path(keys[1]).read_bytes() == farm_png(1)  # one file per image, by hour
    expired = await api.client.get(storage.url(keys[0], -5))
    assert expired.status == 403
    assert (await expired.json())["error"]["code"] == "url_expired"
    # a key of the earlier layout (``<job id>/<index>.png``), recorded by older results
    await storage.put(f"{job['id']}/0.png", b"kept before", "image/png")
    earlier = await api.client.get(storage.url(f"{job['id']}/0.png", 60))
    assert earlier.status == 200
    assert await earlier.read() == b"kept before"
    key_file = api.app[settings_key].data_dir / "media-signing.key"
    assert key_file.stat().st_mode & 0o077 == 0  # the signing secret is private


async def test_s3_round_trip_through_seaweedfs(
    make_api: ApiFactory, seaweed: Seaweed, caplog: pytest.LogCaptureFixture
) -> None:
    """With the S3 backend the result's presigned URL downloads the same bytes from a real
    SeaweedFS, the object sits under the prefix, and the credentials never show."""
    caplog.set_level(logging.DEBUG)
    api = await make_api(storage=seaweed.storage("runs/", S3_SECRET))
    token = await api.key()
    job = await api.submit(token, prompt=PROMPT, seed=SEED)
    done = await api.wait_final(token, job["id"])
    assert done["status"] == "completed", done
    url = done["result"]["images"][0]["url"]
    key = f"runs/{expected_key(done, 0, 'png')}"
    assert url.startswith(f"{seaweed.endpoint}/{seaweed.bucket}/{key}?")
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200
        assert await answer.read() == farm_png(0)
    s3 = seaweed.client(S3_SECRET)
    listed = s3.list_objects_v2(Bucket=seaweed.bucket, Prefix="runs/")
    assert [o["Key"] for o in listed["Contents"]] == [key]
    answer = await api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth(token))
    assert S3_SECRET not in await answer.text()
    assert S3_SECRET not in repr(api.app[settings_key])
    assert all(S3_SECRET not in record.getMessage() for record in caplog.records)
