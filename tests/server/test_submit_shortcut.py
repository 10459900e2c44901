"""The submit's shortcut past aiohttp's routing answers exactly as the routed way does."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from imagerouter.server.protocol import ApiRunner
from imagerouter.server.shortcut import SUBMIT_ROUTE, SubmitShortcut
from tests.helpers.api import Api

GOOD = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}
#: The same route by aiohttp's own routing: the shortcut leaves a submit with ``Expect`` to it.
ROUTED = {"Expect": "100-continue"}


def _same_headers(answer: Any) -> dict[str, str]:
    """The headers a client can rely on (not Date, nor a job's own Location)."""
    return {
        name: answer.headers[name]
        for name in ("Content-Type", "RateLimit-Policy", "WWW-Authenticate", "Allow")
        if name in answer.headers
    }


async def _metric(api: Api, status: str) -> float:
    text = await (await api.client.get("/metrics")).text()
    prefix = (
        "imagerouter_http_request_duration_seconds_count"
        f'{{code="{status}",method="POST",route="jobs.submit"}}'
    )
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_the_server_takes_the_shortcut(api: Api) -> None:
    """The API's server answers through the shortcut (else the benchmark measures nothing)."""
    handler = api.client.server.runner.server.request_handler  # type: ignore[union-attr]
    assert isinstance(handler, SubmitShortcut)


async def test_shortcut_and_routed_submits_answer_alike(api: Api) -> None:
    """A submit by the shortcut and one routed by aiohttp: both 202, charged once, with the
    same headers and body shape, and timed under the same route in /metrics."""
    token = await api.key(credits=100)
    before = await _metric(api, "202")
    fast = await api.client.post("/v1/jobs", json=GOOD, headers=api.auth(token))
    routed = await api.client.post("/v1/jobs", json=GOOD, headers={**api.auth(token), **ROUTED})
    assert fast.status == routed.status == 202
    assert _same_headers(fast) == _same_headers(routed)
    assert "RateLimit" in fast.headers
    assert "RateLimit" in routed.headers
    fast_body, routed_body = await fast.json(), await routed.json()
    assert fast.headers["Location"] == fast_body["links"]["self"]
    assert set(fast_body) == set(routed_body)
    assert (
        fast_body["credits"]
        == routed_body["credits"]
        == {
            "price": 26,
            "charged": 26,
            "refunded": 0,
        }
    )
    assert await _metric(api, "202") == before + 2
    account = await (await api.client.get("/v1/account", headers=api.auth(token))).json()
    assert account["balance"] == 100 - 2 * 26


async def test_shortcut_refusals_match_the_routed_ones(api: Api) -> None:
    """No key, a bad field and bad JSON are refused alike both ways, and change nothing."""
    token = await api.key(credits=100)
    cases: list[tuple[dict[str, str], bytes]] = [
        ({}, b'{"model": "gpt-image-2", "prompt": "x"}'),
        (api.auth(token), b'{"model": "gpt-image-2", "prompt": "x", "n": 50}'),
        (api.auth(token), b'{"model": '),
    ]
    for headers, data in cases:
        headers = {**headers, "Content-Type": "application/json"}
        fast = await api.client.post("/v1/jobs", data=data, headers=headers)
        routed = await api.client.post("/v1/jobs", data=data, headers={**headers, **ROUTED})
        assert fast.status == routed.status
        assert fast.status in (400, 401, 422)
        assert await fast.json() == await routed.json()
        assert _same_headers(fast) == _same_headers(routed)
    await api.assert_nothing_stored(token, 100)


async def test_other_methods_and_routes_are_routed_as_before(api: Api) -> None:
    """``PUT /v1/jobs`` is still a JSON 405 naming the allowed methods; ``GET /v1/jobs``
    still lists; an ``Expect: 100-continue`` submit still gets its 202."""
    token = await api.key(credits=100)
    put = await api.client.put("/v1/jobs", json=GOOD, headers=api.auth(token))
    assert put.status == 405
    assert (await put.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in put.headers["Allow"]
    listing = await api.client.get("/v1/jobs", headers=api.auth(token))
    assert listing.status == 200
    expect = await api.client.post(
        "/v1/jobs", json=GOOD, headers=api.auth(token, Expect="100-continue")
    )
    assert expect.status == 202
    assert (
        len((await (await api.client.get("/v1/jobs", headers=api.auth(token))).json())["data"]) == 1
    )


async def test_every_middleware_of_the_app_runs_on_a_shortcut_submit() -> None:
    """The shortcut chains the app's own middlewares, outermost first: one added beside the
    API's runs on a shortcut submit as on a routed one."""
    seen: list[str] = []

    @web.middleware
    async def outer(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(f"outer {request.path_qs}")
        return await handler(request)

    @web.middleware
    async def inner(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(f"inner {request.path_qs}")
        return await handler(request)

    async def submit(request: web.Request) -> web.Response:
        return web.json_response({"route": request.match_info.route.name}, status=202)

    app = web.Application(middlewares=[outer, inner])
    app.router.add_post("/v1/jobs", submit, name=SUBMIT_ROUTE)
    runner = ApiRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert isinstance(runner.server.request_handler, SubmitShortcut)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            for path in ("/v1/jobs", "/v1/jobs?via=router"):
                async with session.post(f"http://127.0.0.1:{port}{path}") as answer:
                    assert answer.status == 202
                    assert (await answer.json())["route"] == SUBMIT_ROUTE
    finally:
        await runner.cleanup()
    assert seen == [
        "outer /v1/jobs",
        "inner /v1/jobs",
        "outer /v1/jobs?via=router",
        "inner /v1/jobs?via=router",
    ]
