"""A customer's webhook endpoint for the webhook benchmarks, run in its own process.

It answers each webhook 204 after ``--delay-ms``, holding at most ``--capacity`` at once, and
refuses one beyond that at once with ``--refusal`` (503 by default), with ``Retry-After:
--retry-after`` when given. With ``--down-s`` it first refuses everything with 503 (and the
Retry-After) for that long from its first webhook. ``GET /_summary`` says what it saw: the
requests, those served, those refused, the most it held at once, every request as ``[arrived,
status, webhook-id]`` and when each refusal was answered.

    python -m loadtests.bench.endpoint --port PORT [--delay-ms 100] [--capacity N]
        [--refusal 503] [--retry-after 1] [--down-s 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from imagerouter import eventloop

__all__ = ["endpoint_command"]


def endpoint_command(
    port: int,
    *,
    delay_ms: float,
    capacity: int | None = None,
    refusal: int = 503,
    retry_after: str | None = None,
    down_s: float = 0.0,
) -> list[str]:
    """The arguments that start this endpoint (to run with the benchmark's interpreter)."""
    command = ["-m", "loadtests.bench.endpoint", "--port", str(port), "--delay-ms", f"{delay_ms:g}"]
    if capacity is not None:
        command += ["--capacity", str(capacity)]
    command += ["--refusal", str(refusal), "--down-s", f"{down_s:g}"]
    if retry_after is not None:
        command += ["--retry-after", retry_after]
    return command


def app(
    delay_s: float, capacity: int | None, refusal: int, retry_after: str | None, down_s: float
) -> web.Application:
    """The endpoint's application (see the module doc)."""
    seen = {"seen": 0, "ok": 0, "refused": 0, "now": 0, "most": 0}
    first_at: list[float] = []  # the first webhook's arrival (down_s counts from it)
    log: list[tuple[float, int, str]] = []
    refused_at: list[float] = []
    headers = {"Retry-After": retry_after} if retry_after is not None else {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrived = time.time()
        webhook_id = request.headers.get("webhook-id", "")
        seen["seen"] += 1
        if not first_at:
            first_at.append(arrived)
        up = arrived >= first_at[0] + down_s
        if not up or (capacity is not None and seen["now"] >= capacity):
            status = refusal if up else 503
            seen["refused"] += 1
            log.append((arrived, status, webhook_id))
            refused_at.append(time.time())
            return web.Response(status=status, headers=headers, text="busy")
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        try:
            await asyncio.sleep(delay_s)
        finally:
            seen["now"] -= 1
        seen["ok"] += 1
        log.append((arrived, 204, webhook_id))
        return web.Response(status=204)

    async def summary(_: web.Request) -> web.Response:
        return web.json_response({**seen, "log": log, "refused_at": refused_at})

    application = web.Application()
    application.router.add_get("/_summary", summary)
    application.router.add_post("/{tail:.*}", hook)
    return application


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--capacity", type=int)
    parser.add_argument("--refusal", type=int, default=503)
    parser.add_argument("--retry-after")
    parser.add_argument("--down-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    endpoint = app(args.delay_ms / 1000, args.capacity, args.refusal, args.retry_after, args.down_s)
    loop = eventloop.new_event_loop()  # no slower than the server whose webhooks it takes
    web.run_app(endpoint, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
