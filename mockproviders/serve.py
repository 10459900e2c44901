"""``run_farm``: serve the farm in the foreground until SIGINT or SIGTERM.

On start it prints where the farm listens, the ``/_farm/providers`` document, and (with TLS)
the environment a client needs, e.g. for the unchanged fal-client::

    FAL_QUEUE_RUN_HOST=127.0.0.1:8900/fal/queue FAL_RUN_HOST=127.0.0.1:8900/fal/run
    SSL_CERT_FILE=/tmp/mockfarm-ca-….pem
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from mockproviders.adapter import FarmAdapter
from mockproviders.farm import Farm

__all__ = ["DEFAULT_PORT", "run_farm"]

#: The port ``run_farm`` listens on when none is given.
DEFAULT_PORT = 8900


def run_farm(
    scenario: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tls: bool = False,
    *,
    adapters: Sequence[FarmAdapter] = (),
) -> None:
    """Serve the farm until SIGINT/SIGTERM.

    Args:
        scenario: a scenario file or the name of a bundled one; None for no faults.
        host: the address to listen on.
        port: the port (0 picks a free one, printed on start).
        tls: serve https with a throwaway CA and print the CA bundle's path.
        adapters: extra provider APIs (e.g. from plugins' ``register_farm_adapters``).
    """
    asyncio.run(serve_farm(scenario, host=host, port=port, tls=tls, adapters=adapters))


async def serve_farm(
    scenario: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tls: bool = False,
    adapters: Sequence[FarmAdapter] = (),
    out: TextIO | None = None,
) -> None:
    """The coroutine behind :func:`run_farm`."""
    out = out or sys.stdout
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Farm(scenario, host=host, port=port, tls=tls, adapters=adapters) as farm:
            _announce(farm, scenario, out)
            await stop.wait()
            print("mock provider farm: stopping", file=out, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _announce(farm: Farm, scenario: str | None, out: TextIO) -> None:
    info = farm.providers()
    print(f"mock provider farm listening on {farm.url} (scenario: {scenario or 'none'})", file=out)
    print(json.dumps(info, indent=2), file=out)
    fal = info["providers"]["fal"]
    env = [f"FAL_QUEUE_RUN_HOST={fal['queue_host']}", f"FAL_RUN_HOST={fal['run_host']}"]
    if farm.ca_bundle:
        print(f"CA bundle: {farm.ca_bundle}", file=out)
        env.append(f"SSL_CERT_FILE={farm.ca_bundle}")
    else:
        print("fal-client needs https: start the farm with --tls to use it unchanged", file=out)
    print("fal-client environment: " + " ".join(env), file=out)
    print("stop with Ctrl-C", file=out, flush=True)
