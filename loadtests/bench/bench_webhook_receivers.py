"""What one customer's webhook endpoint receives from the sender, fixed against adaptive
per-receiver concurrency (``webhook_per_target`` and ``webhook_per_target_max``).

A receiver in its own process (:mod:`loadtests.bench.endpoint`, pinned to core 0) answers each
webhook after ``--delay-ms``; one with a capacity answers a 503 at once to a request beyond it
(an endpoint whose workers are all busy). This process (pinned to core 1) is the server's
:class:`~imagerouter.webhooks.WebhookSender` with the server's default timeout (15 s), offering
``--rate`` webhooks a second for ``--duration`` s, open loop (a launch's completions do not
wait for the receiver), each one attempt: what a retry schedule would do later is not in the
figures. For each receiver and sender configuration it reports the webhooks delivered on
their first attempt, those not sent for want of room in line (a webhook waits at most half the
sender's timeout for a free slot of its receiver; the server's worker gives such a one back,
to be sent later without using an attempt), the 503s, the delivered a second over the span
from the first send to the last answer, and the most the receiver held at once.

    python -m loadtests.bench.bench_webhook_receivers [--rate 400] [--duration 5] [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

from imagerouter.server.settings import ServerSettings
from imagerouter.webhooks import UrlPolicy, WebhookSender
from loadtests.bench.common import free_port, wait_for_http, write_results
from loadtests.bench.endpoint import endpoint_command
from loadtests.bench.http_load import CLIENT_CPU, SERVER_CPU, pinned
from loadtests.processes import stop_process

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
BODY = json.dumps({"type": "job.completed", "data": {"id": "job_0123456789"}}).encode()
#: The sender's timeout: the server's default.
TIMEOUT_S: float = ServerSettings.model_fields["webhook_timeout_s"].default
#: (receiver capacity or None for none, per_target, per_target_max): the server's defaults
#: fixed and adaptive, and against a receiver of limited capacity also a fixed 64 (the
#: workaround before the limit adapted: raise the cap by hand).
CASES = (
    (None, 4, 4),
    (None, 4, 64),
    (16, 4, 4),
    (16, 64, 64),
    (16, 4, 64),
)


async def offer(url: str, rate: float, duration_s: float, per_target: int, ceiling: int) -> dict:
    """``rate`` webhooks a second for ``duration_s`` through one sender, one attempt each."""
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    count = int(rate * duration_s)
    async with WebhookSender(
        policy,
        timeout_s=TIMEOUT_S,
        max_connections=256,
        per_target=per_target,
        per_target_max=ceiling,
    ) as sender:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sends = []
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            sends.append(asyncio.ensure_future(sender.send(url, f"msg_{n}", BODY, SECRETS)))
        results = await asyncio.gather(*sends)
        span = loop.time() - start
        limits = list(sender.targets.snapshot().values())
    delivered = sum(1 for r in results if r.status is not None and 200 <= r.status < 300)
    return {
        "offered": count,
        "delivered": delivered,
        "rejected_503": sum(1 for r in results if r.status == 503),
        "not_sent": sum(1 for r in results if r.not_sent is not None),
        "span_s": round(span, 2),
        "delivered_per_s": round(delivered / span, 1),
        "limit_at_end": limits[0]["limit"] if limits else None,
    }


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def run_case(args: argparse.Namespace, capacity: int | None, floor: int, ceiling: int) -> dict:
    """One receiver process and one sender configuration."""
    port = free_port()
    command = [sys.executable, *endpoint_command(port, delay_ms=args.delay_ms, capacity=capacity)]
    receiver = subprocess.Popen(pinned(command, CLIENT_CPU), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/_summary", timeout_s=30)
        result = asyncio.run(offer(f"{base}/hook", args.rate, args.duration, floor, ceiling))
        seen = _get(f"{base}/_summary")
    finally:
        stop_process(receiver, 10)
    return {
        "receiver_capacity": capacity,
        "per_target": floor,
        "per_target_max": ceiling,
        **result,
        "receiver_held_at_most": seen["most"],
    }


def main(argv: list[str] | None = None) -> None:
    """Run every case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="Webhooks offered a second.")
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds of offer.")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="The receiver's answer time.")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) > SERVER_CPU:
        os.sched_setaffinity(0, {SERVER_CPU})
    print(
        f"webhooks to one receiver answering in {args.delay_ms:g} ms: {args.rate:g}/s offered "
        f"for {args.duration:g} s, one attempt each, the sender's timeout {TIMEOUT_S:g} s"
    )
    print(
        f"{'receiver':<18} {'per target':<11} {'delivered':>9} {'not sent':>9} {'503':>5} "
        f"{'delivered/s':>11} {'held at most':>12} {'limit at end':>12}"
    )
    cases = []
    for capacity, floor, ceiling in CASES:
        case = run_case(args, capacity, floor, ceiling)
        cases.append(case)
        receiver = "unlimited" if capacity is None else f"503 beyond {capacity}"
        sender = f"{floor}" if ceiling <= floor else f"{floor} to {ceiling}"
        print(
            f"{receiver:<18} {sender:<11} {case['delivered']:>9} {case['not_sent']:>9} "
            f"{case['rejected_503']:>5} {case['delivered_per_s']:>11} "
            f"{case['receiver_held_at_most']:>12} {case['limit_at_end']!s:>12}",
            flush=True,
        )
    path = write_results(
        "webhook_receivers",
        {
            "benchmark": "webhook_receivers",
            "method": "receiver on core 0, the sender on core 1; open loop, one attempt each",
            "rate_per_s": args.rate,
            "duration_s": args.duration,
            "receiver_delay_ms": args.delay_ms,
            "sender_timeout_s": TIMEOUT_S,
            "cases": cases,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
