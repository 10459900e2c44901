"""The webhook benchmarks' endpoint (``loadtests.bench.endpoint``) on loopback: it serves what
fits its capacity, refuses the rest with its status and Retry-After, is down (503) for its first
seconds when asked, and its summary counts and logs every request."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer

from loadtests.bench.endpoint import app


async def _post_all(server: TestServer, count: int) -> list[tuple[int, str | None]]:
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> tuple[int, str | None]:
            headers = {"webhook-id": f"msg_{n}"}
            async with session.post(server.make_url("/hooks/x"), data=b"{}", headers=headers) as r:
                return r.status, r.headers.get("Retry-After")

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _summary(server: TestServer) -> dict:
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/_summary")) as r:
        return await r.json()


async def test_it_serves_its_capacity_and_refuses_the_rest_with_its_retry_after() -> None:
    """Five at once to an endpoint holding two for 0.2 s, refusing with 429 and
    ``Retry-After: 1``: two served, three refused at once; the summary agrees."""
    server = TestServer(app(0.2, 2, 429, "1", 0.0), host="127.0.0.1")
    await server.start_server()
    try:
        answers = await _post_all(server, 5)
        seen = await _summary(server)
    finally:
        await server.close()
    assert sorted(answers) == [(204, None), (204, None), (429, "1"), (429, "1"), (429, "1")]
    assert (seen["seen"], seen["ok"], seen["refused"], seen["most"]) == (5, 2, 3, 2)
    assert sorted(status for _, status, _ in seen["log"]) == [204, 204, 429, 429, 429]
    assert {webhook_id for _, _, webhook_id in seen["log"]} == {f"msg_{n}" for n in range(5)}
    assert len(seen["refused_at"]) == 3


async def test_down_it_refuses_everything_with_503_then_serves() -> None:
    """Down for 0.3 s from its first webhook: three then are refused with 503 (and no
    Retry-After when none is set); one after the 0.3 s is served."""
    server = TestServer(app(0.0, None, 503, None, 0.3), host="127.0.0.1")
    await server.start_server()
    try:
        first = await _post_all(server, 3)
        await asyncio.sleep(0.35)
        later = await _post_all(server, 1)
        seen = await _summary(server)
    finally:
        await server.close()
    assert first == [(503, None)] * 3
    assert later == [(204, None)]
    assert (seen["refused"], seen["ok"]) == (3, 1)
