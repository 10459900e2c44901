"""``run_farm``: serve the farm in the foreground until SIGINT or SIGTERM.

On start it prints where the farm listens, the ``/_farm/providers`` document, the CA bundle
(with TLS), and the environment of every SDK that is pointed at the farm by environment
variables rather than a base URL (an adapter's ``sdk_environment``, plus ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from imagerouter import eventloop
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
    adapters: Sequence[FarmAdapter] | None = None,
) -> None:
    """Serve the farm until SIGINT/SIGTERM.

    Args:
        scenario: a scenario file or the name of a bundled one; None for no faults.
        host: the address to listen on.
        port: the port (0 picks a free one, printed on start).
        tls: serve https with a throwaway CA and print the CA bundle's path.
        adapters: the provider APIs to serve; None: every loaded plugin's farm adapter.
    """
    eventloop.run(serve_farm(scenario, host=host, port=port, tls=tls, adapters=adapters))


async def serve_farm(
    scenario: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tls: bool = False,
    adapters: Sequence[FarmAdapter] | None = None,
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
    if farm.ca_bundle:
        print(f"CA bundle: {farm.ca_bundle}", file=out)
    for name, adapter in farm.state.adapters.items():
        if adapter.https_only and not farm.ca_bundle:
            print(f"{name}'s SDK needs https: start the farm with --tls to use it", file=out)
        env = adapter.sdk_environment(farm.url)
        if env and farm.ca_bundle:
            env["SSL_CERT_FILE"] = farm.ca_bundle
        if env:
            print(
                f"{name} SDK environment: " + " ".join(f"{k}={v}" for k, v in env.items()), file=out
            )
    print("stop with Ctrl-C", file=out, flush=True)
