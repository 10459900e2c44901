"""Image downloads into the output storage, against a real HTTP server on loopback: read whole
through the router's lean pool (redirects followed), and streamed through the session when
the answer turns out larger than ``STREAM_ABOVE_BYTES``."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imagerouter.jobs.types import Job
from imagerouter.storage import LocalStorage
from imagerouter.storage.base import ProviderOutputError, StorageError
from imagerouter.storage.config import StorageSettings
from imagerouter.storage.outputs import STREAM_ABOVE_BYTES, OutputStore
from imagerouter.transport import HttpPool

SMALL = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
LARGE = b"\x89PNG\r\n\x1a\n" + b"L" * (STREAM_ABOVE_BYTES + 1000)


@dataclass
class Rig:
    """The origin server's base URL, how many requests each of its paths took, and an
    output store (local disk) wired as the server wires it."""

    base: str
    hits: dict[str, int]
    outputs: OutputStore
    storage: LocalStorage
    pool: HttpPool


def origin_app(hits: dict[str, int]) -> web.Application:
    """``/small.png``, ``/large.png``, ``/jpeg`` (a JPEG under a PNG name), ``/moved`` (a
    relative redirect to ``/small.png``), ``/loop`` (redirects to itself), ``/gone`` (404)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        if name == "small.png":
            return web.Response(body=SMALL, content_type="image/png")
        if name == "large.png":
            return web.Response(body=LARGE, content_type="image/png")
        if name == "jpeg":
            return web.Response(body=b"\xff\xd8\xff jpeg", content_type="image/jpeg")
        if name == "page.png":  # an error page served as an image
            return web.Response(body=b"<html>" + b"x" * 100 + b"</html>", content_type="image/png")
        if name == "large-page.png":  # the same, too large to read whole: streamed
            return web.Response(
                body=b"<html>" + b"x" * STREAM_ABOVE_BYTES, content_type="image/png"
            )
        if name == "moved":
            raise web.HTTPFound("/small.png")
        if name == "loop":
            raise web.HTTPFound("/loop")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hits: dict[str, int] = {}
    server = TestServer(origin_app(hits), host="127.0.0.1")
    await server.start_server()
    with ThreadPoolExecutor(2) as executor:
        storage = LocalStorage(tmp_path / "media", b"k" * 32, executor)
        async with aiohttp.ClientSession() as session, HttpPool() as pool:
            outputs = OutputStore(storage, lambda: session, StorageSettings(), http=lambda: pool)
            yield Rig(str(server.make_url("")).rstrip("/"), hits, outputs, storage, pool)
    await server.close()


def a_job() -> Job:
    now = time.time()
    return Job("job_dl", "acct_1", "processing", {}, 1, 0, now, now, now + 60)


async def stored(rig: Rig, url: str) -> tuple[dict, bytes]:
    """Store one image given by ``url``; its shown image and the bytes on disk."""
    result = await rig.outputs(a_job(), {"images": [{"url": url}]})
    key = result["storage"]["keys"][0]
    return result["images"][0], rig.storage.path(key).read_bytes()


async def test_an_image_is_read_whole_and_stored_byte_for_byte(rig: Rig) -> None:
    image, data = await stored(rig, f"{rig.base}/small.png")
    assert data == SMALL
    assert image["content_type"] == "image/png"
    assert rig.hits == {"small.png": 1}


async def test_a_redirect_is_followed_to_the_image(rig: Rig) -> None:
    _, data = await stored(rig, f"{rig.base}/moved")
    assert data == SMALL
    assert rig.hits == {"moved": 1, "small.png": 1}


async def test_the_answer_names_the_media_type(rig: Rig) -> None:
    image, data = await stored(rig, f"{rig.base}/jpeg")
    assert data.startswith(b"\xff\xd8\xff")
    assert image["content_type"] == "image/jpeg"
    assert image["url"].split("?")[0].endswith("-0.jpg")


async def test_an_image_larger_than_the_stream_threshold_is_streamed_whole(rig: Rig) -> None:
    """The lean read stops at the threshold; the session then streams the whole file."""
    _, data = await stored(rig, f"{rig.base}/large.png")
    assert data == LARGE
    assert rig.hits == {"large.png": 2}


async def test_a_url_the_lean_client_will_not_send_goes_through_the_session(rig: Rig) -> None:
    """Credentials in the URL: the lean pool refuses to put them on the wire, aiohttp sends
    them as basic auth; the image is stored all the same, with one request to the origin."""
    url = rig.base.replace("http://", "http://user:secret@") + "/small.png"
    _, data = await stored(rig, url)
    assert data == SMALL
    assert rig.hits == {"small.png": 1}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("loop", "more than 5 redirects"),
        ("gone", "answered 404"),
        ("page.png", "is not an image or a video: 113 bytes served as image/png"),
        ("large-page.png", "is not an image or a video"),
    ],
)
async def test_a_bad_url_fails_the_store_and_writes_nothing(
    rig: Rig, path: str, message: str
) -> None:
    """Each is the provider's fault (ProviderOutputError: the router fails over)."""
    with pytest.raises(ProviderOutputError, match=message):
        await stored(rig, f"{rig.base}/{path}")
    assert not [p for p in rig.storage.root.rglob("*") if p.is_file()]


async def test_inline_base64_that_is_no_image_is_the_providers_fault(rig: Rig) -> None:
    """Valid base64 of an HTML page: refused as the provider's output, nothing written."""
    page = base64.b64encode(b"<html>nope</html>").decode()
    with pytest.raises(ProviderOutputError, match="is not an image or a video"):
        await rig.outputs(a_job(), {"images": [{"b64_json": page}]})
    assert not [p for p in rig.storage.root.rglob("*") if p.is_file()]


async def test_the_download_cap_still_holds(rig: Rig) -> None:
    """``max_download_bytes`` under the threshold: a larger image is refused outright."""
    capped = OutputStore(
        rig.storage,
        lambda: pytest.fail("no streaming below the threshold"),
        StorageSettings(max_download_bytes=1024),
        http=lambda: rig.pool,
    )
    with pytest.raises(StorageError, match="larger than 1024 bytes"):
        await capped(a_job(), {"images": [{"url": f"{rig.base}/small.png"}]})


@pytest.mark.parametrize("keep_inline", [False, True])
async def test_inline_base64_is_stored_and_kept_in_the_result_only_when_asked(
    rig: Rig, keep_inline: bool
) -> None:
    """A provider's inline image (OpenAI's ``b64_json``) is decoded and stored byte for byte;
    the result keeps the base64 beside the stored URL only with ``keep_inline`` (off by
    default: it is megabytes in every job row)."""
    assert StorageSettings().keep_inline is False
    outputs = OutputStore(
        rig.storage, lambda: None, StorageSettings(keep_inline=keep_inline), http=lambda: rig.pool
    )
    inline = base64.b64encode(SMALL).decode("ascii")
    result = await outputs(a_job(), {"images": [{"b64_json": inline}]})
    (image,) = result["images"]
    assert rig.storage.path(result["storage"]["keys"][0]).read_bytes() == SMALL
    assert image["url"].split("?")[0].endswith("-0.png")
    assert image.get("b64_json") == (inline if keep_inline else None)
    assert rig.hits == {}
