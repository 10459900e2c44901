"""A provider whose output cannot be taken (its image URL answers an error, an HTML page served
as an image, or nothing before the job's deadline) fails that call, not the job: the router
goes on to the next provider, as after any other failure of the provider's. fal is reached
through a proxy in front of the farm that breaks the images it hands out; the others are the
farm's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from imagerouter.server.app import create_app
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.delivery.conftest import Api, delivery_settings
from tests.helpers.api import FAST_ROUTER

HTML = b"<!DOCTYPE html><html><body>upstream error</body></html>"


@dataclass
class FalProxy:
    """Forwards everything to the farm (so that the farm names the proxy in its URLs) and
    answers the images it hands out as ``media`` says: ``"404"``, ``"html"`` (200, an HTML
    page as ``image/png``), ``"hang"`` (nothing, for a minute), or None (the farm's image)."""

    farm_url: str
    media: str | None = None
    media_requests: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_farm/media/") and self.media is not None:
            self.media_requests += 1
            if self.media == "404":
                return web.Response(status=404, text="not found")
            if self.media == "html":
                return web.Response(body=HTML, headers={"Content-Type": "image/png"})
            await asyncio.sleep(60)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.farm_url + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=answer.status, body=body, headers=kept)


@contextlib.asynccontextmanager
async def fal_proxy(farm: Farm) -> AsyncIterator[tuple[FalProxy, str]]:
    """The proxy on a free loopback port, and fal's base URL through it."""
    info = farm.providers()
    proxy = FalProxy(info["url"])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        origin = str(server.make_url("")).rstrip("/")
        yield proxy, info["providers"]["fal"]["base_url"].replace(info["url"], origin)
    finally:
        await server.close()


async def _api(
    aiohttp_client: Any, farm: Farm, data: Path, fal_url: str, deadline_s: float = 20
) -> Api:
    config = {
        "router": {**FAST_ROUTER["router"], "deadline_s": deadline_s},
        "providers": {"fal": {"base_url": fal_url}},
    }
    router = farm_router(farm, config, seed=1)
    client: TestClient = await aiohttp_client(create_app(delivery_settings(data), router=router))
    return Api(client, client.app)


@pytest.mark.parametrize("media", ["404", "html"])
async def test_a_provider_whose_image_cannot_be_taken_is_failed_over(
    aiohttp_client: Any, farm: Farm, tmp_path: Path, media: str
) -> None:
    """fal (first for gpt-image-2) completes but its image is a 404, or an HTML page served
    as image/png: the job completes on WaveSpeed, charged once, its stored file a real
    image; fal's attempt is recorded as the provider's failure. The job failed before,
    ``output_storage_failed``, WaveSpeed and OpenAI never tried."""
    async with fal_proxy(farm) as (proxy, fal_url):
        proxy.media = media
        api = await _api(aiohttp_client, farm, tmp_path / "data", fal_url)
        token = await api.key(credits=100)
        job = await api.submit(token)
        final = await api.wait_final(token, job["id"])
    assert final["status"] == "completed", final.get("error")
    assert final["result"]["provider"] == "wavespeed"
    attempts = [(a["provider"], a["outcome"]) for a in final["attempts"]]
    assert attempts == [("fal", "error"), ("wavespeed", "ok")], final["attempts"]
    assert final["attempts"][0]["error_class"] == "ProviderUnavailable"
    assert "output unusable" in final["attempts"][0]["error"]
    assert proxy.media_requests >= 1
    assert final["credits"] == {"price": 26, "charged": 26, "refunded": 0}
    account = await (await api.client.get("/v1/account", headers=api.auth(token))).json()
    assert account["balance"] == 100 - 26
    [image] = final["result"]["images"]
    stored = await api.client.get(URL(image["url"]).path_qs)
    assert stored.status == 200
    assert (await stored.read()).startswith(b"\x89PNG")


async def test_an_image_not_taken_by_the_jobs_deadline_ends_the_job_at_its_deadline(
    aiohttp_client: Any, farm: Farm, tmp_path: Path
) -> None:
    """fal's image never comes and fal is the only provider allowed: the job fails at its
    deadline (3 s), not when the download's own 30 s timeout ends, and is refunded."""
    async with fal_proxy(farm) as (proxy, fal_url):
        proxy.media = "hang"
        api = await _api(aiohttp_client, farm, tmp_path / "data", fal_url, deadline_s=3)
        token = await api.key(credits=100)
        job = await api.submit(token, routing={"only": ["fal"]})
        final = await api.wait_final(token, job["id"], timeout_s=25)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "no_provider_available"
    assert final["finished_at"] <= final["deadline_at"] + 1.0
    called = [(a["provider"], a["outcome"]) for a in final["attempts"] if a["outcome"] != "skipped"]
    assert called == [("fal", "error")]
    account = await (await api.client.get("/v1/account", headers=api.auth(token))).json()
    assert account["balance"] == 100
