"""Router overhead: ``Router.generate`` against the farm vs a direct pooled aiohttp call to the
same farm endpoint, at a fixed concurrency, in one run.

The farm runs in its own process with no latency, no faults and tiny images (``[images]
png_bytes = "tiny"``: with realistic 1.5 MB PNGs both sides would measure moving bytes), so
what is measured is the client side: CPU time of this process per request, throughput, and
latency. Rounds alternate direct / router so that machine noise hits both alike; medians of
the rounds are reported.

    python -m loadtests.bench.bench_router [--requests 2000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from imagerouter import ImageRequest
from imagerouter.catalog import Catalog, load_catalog
from loadtests.bench.common import farm_process, median, percentile, write_results
from mockproviders.bridge import farm_router

MODEL = "bench-direct"
TINY = '[images]\npng_bytes = "tiny"\n'
BODY = {
    "model": "gpt-image-2",
    "prompt": "bench",
    "n": 1,
    "size": "1024x1024",
    "quality": "auto",
    "output_format": "png",
}


def catalog() -> Catalog:
    """The shipped catalog plus a model served by OpenAI alone: one HTTP call per job."""
    extra = {
        "models": {
            MODEL: {
                "credits": {"low": 1, "standard": 1, "high": 1},
                "providers": [{"provider": "openai", "model": "gpt-image-2"}],
            }
        },
        "sources": ["<bench>"],
    }
    return load_catalog().merged(Catalog.model_validate(extra))


async def drive(total: int, concurrency: int, one) -> dict[str, float]:
    """Run ``one()`` ``total`` times, ``concurrency`` at a time; measure wall, CPU, latency."""
    latencies: list[float] = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "rps": total / wall,
        "cpu_ms_per_request": cpu / total * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def run(requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        scenario = Path(tmp) / "tiny.toml"
        scenario.write_text('description = "no latency, no faults, tiny images"\n' + TINY)
        with farm_process(str(scenario)) as farm:
            return await _compare(farm, requests, concurrency, rounds)


async def _compare(
    farm: dict[str, Any], requests: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    """Alternate rounds of direct calls and ``Router.generate`` against ``farm``; medians."""
    url = farm["providers"]["openai"]["base_url"] + "/images/generations"
    headers = {"Authorization": "Bearer bench"}
    router = farm_router(farm, catalog=catalog())
    request = ImageRequest(model=MODEL, prompt="bench")
    async with aiohttp.ClientSession() as session, router:

        async def direct() -> None:
            async with session.post(url, json=BODY, headers=headers) as response:
                assert response.status == 200
                await response.json()

        async def routed() -> None:
            await router.generate(request)

        await drive(200, concurrency, direct)  # warm both pools
        await drive(200, concurrency, routed)
        samples: dict[str, list[dict[str, float]]] = {"direct": [], "router": []}
        for _ in range(rounds):
            samples["direct"].append(await drive(requests, concurrency, direct))
            samples["router"].append(await drive(requests, concurrency, routed))
    summary = {
        name: {key: median([s[key] for s in runs]) for key in runs[0]}
        for name, runs in samples.items()
    }
    summary["comparison"] = {
        "throughput_ratio": summary["router"]["rps"] / summary["direct"]["rps"],
        "added_cpu_ms_per_request": summary["router"]["cpu_ms_per_request"]
        - summary["direct"]["cpu_ms_per_request"],
        "added_p50_ms": summary["router"]["p50_ms"] - summary["direct"]["p50_ms"],
    }
    return {"requests": requests, "concurrency": concurrency, "rounds": rounds, **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.concurrency, args.rounds))
    print(
        f"router overhead, {args.requests} requests × {args.rounds} rounds, "
        f"concurrency {args.concurrency} (medians)"
    )
    print(f"{'':8} {'req/s':>8} {'CPU ms/req':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("direct", "router"):
        row = results[name]
        print(
            f"{name:8} {row['rps']:8.0f} {row['cpu_ms_per_request']:11.3f} "
            f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f}"
        )
    comparison = results["comparison"]
    print(
        f"throughput ratio router/direct: {comparison['throughput_ratio']:.2f}; "
        f"added CPU per request: {comparison['added_cpu_ms_per_request']:.3f} ms; "
        f"added p50: {comparison['added_p50_ms']:.2f} ms"
    )
    print(f"written to {write_results('router_overhead', results)}")


if __name__ == "__main__":
    main()
