"""The HTTP client a provider call costs: ``imagerouter.transport.HttpPool`` vs
``aiohttp.ClientSession``, the same JSON POST to the same server, in one run.

An aiohttp server in its own process, pinned to core 1, answers every request with a small
JSON body (a queue status, as fal's is). This process, pinned to core 0, sends ``--requests``
POSTs with a JSON body and an ``Authorization`` header at ``--concurrency``, reads and parses
each answer, and measures its own CPU time per request and the throughput; rounds alternate
the two clients so that machine noise hits both alike, and the medians are reported.

    python -m loadtests.bench.bench_http_client [--requests 20000] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from imagerouter.transport import HttpPool
from loadtests.bench.common import free_port, median, wait_for_http, write_results
from loadtests.bench.http_load import CLIENT_CPU, SERVER_CPU, pinned
from loadtests.processes import stop_process

BODY = {"prompt": "a lighthouse at dusk", "num_images": 1}
ANSWER = {"status": "COMPLETED", "logs": [], "request_id": "req_0123456789"}
WARM_UP = 200


def serve(port: int) -> None:
    """The server side (``--serve PORT``): every route answers :data:`ANSWER`."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


Send = Callable[[], Awaitable[None]]


async def _round(send: Send, requests: int, concurrency: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        await send()

    async def worker() -> None:
        for _ in range(requests // concurrency):
            await send()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = requests // concurrency * concurrency
    return {"cpu_us_per_request": cpu / done * 1e6, "requests_per_s": done / wall}


async def measure(url: str, requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Alternating rounds of both clients against ``url``; every round's figures."""
    body = json.dumps(BODY).encode()
    headers = {"Authorization": "Key bench", "Content-Type": "application/json"}
    results: dict[str, list[dict[str, float]]] = {"aiohttp": [], "lean pool": []}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        HttpPool() as pool,
    ):

        async def via_aiohttp() -> None:
            timeout = aiohttp.ClientTimeout(total=30)
            async with session.post(url, data=body, headers=headers, timeout=timeout) as reply:
                json.loads(await reply.read())

        async def via_pool() -> None:
            reply = await pool.request("POST", url, headers=headers, body=body, timeout_s=30)
            json.loads(reply.body)

        for _ in range(rounds):
            results["aiohttp"].append(await _round(via_aiohttp, requests, concurrency))
            results["lean pool"].append(await _round(via_pool, requests, concurrency))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    port = free_port()
    command = [sys.executable, "-m", "loadtests.bench.bench_http_client", "--serve", str(port)]
    server = subprocess.Popen(pinned(command, SERVER_CPU), stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/ready", timeout_s=30)
        os.sched_setaffinity(0, {CLIENT_CPU})
        rounds = asyncio.run(
            measure(
                f"{url}/fal-ai/flux/requests/abc/status",
                args.requests,
                args.concurrency,
                args.rounds,
            )
        )
    finally:
        stop_process(server, 10)
    medians = {
        name: {key: round(median([r[key] for r in runs]), 1) for key in runs[0]}
        for name, runs in rounds.items()
    }
    print(
        f"HTTP client: {args.requests} POSTs × {args.rounds} rounds at concurrency "
        f"{args.concurrency} (medians)"
    )
    print(f"{'':>10}  {'CPU µs/request':>14}  {'requests/s':>10}")
    for name, row in medians.items():
        print(f"{name:>10}  {row['cpu_us_per_request']:>14}  {row['requests_per_s']:>10}")
    ratio = medians["lean pool"]["cpu_us_per_request"] / medians["aiohttp"]["cpu_us_per_request"]
    print(f"lean pool CPU per request / aiohttp's: {ratio:.2f}")
    path = write_results(
        "http_client",
        {
            "benchmark": "http_client",
            "method": "server on core 1, this client on core 0; rounds alternate the clients",
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rounds": rounds,
            "medians": medians,
            "cpu_ratio_pool_to_aiohttp": round(ratio, 3),
        },
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
