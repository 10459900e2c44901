"""Running the server: :class:`ApiRunner` on a TCP site, with graceful shutdown on SIGTERM
and SIGINT (what ``web.run_app`` does, with the runner that answers parser errors in JSON).

aiohttp turns either signal into a graceful exit: it stops accepting connections, lets
in-flight requests finish for ``shutdown_grace_s``, then runs the cleanup contexts, which stop
the worker pool (finishing or handing back running jobs) and close the store.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from imagerouter import eventloop
from imagerouter.config import Settings
from imagerouter.server.app import create_app
from imagerouter.server.protocol import ApiRunner
from imagerouter.server.settings import ServerSettings

__all__ = ["YOUNG_COLLECTION_THRESHOLD", "run_server"]

#: Allocations (less deallocations) between young collections while serving (Python: 700).
YOUNG_COLLECTION_THRESHOLD = 10_000


def run_server(
    settings: ServerSettings,
    router_settings: Settings | None = None,
    *,
    router_overrides: dict[str, Any] | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the job API until SIGTERM or SIGINT, then shut down cleanly.

    With ``settings.farm``, ``router_overrides`` (the config file's router tables) are laid
    over the farm's provider settings.
    """
    app = create_app(settings, router_settings, router_overrides=router_overrides)
    # uvloop when installed: it cuts the loop's and the sockets' share of every request by
    # about a fifth
    eventloop.run(_serve(app, settings, announce))


async def _serve(
    app: web.Application, settings: ServerSettings, announce: Callable[[str], None]
) -> None:
    """Serve until SIGTERM or SIGINT, then clean up while the workers still run (so they
    finish or hand back their jobs), as ``web.run_app`` does."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = ApiRunner(app, shutdown_timeout=settings.shutdown_grace_s, access_log=None)
    try:
        await runner.setup()
    except BaseException:
        # a context that failed to start (the store, the shared state): close those that
        # did, as web.run_app does, rather than leave them to the interpreter's exit
        await runner.cleanup()
        raise
    # Everything built so far (modules, models, schemas, the app) lives as long as the process:
    # set it apart from the cyclic collector, which otherwise walks it again in every full
    # collection that the requests' short-lived objects keep triggering.
    gc.freeze()
    # A young collection walks whatever is alive at that moment (the requests in flight), so
    # its cost hardly depends on the threshold: collecting 14 times less often saves ~10 us
    # of event-loop CPU per submit under load, for at most that many more objects held.
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        # said once listening, with the port it got (--port 0 asks the system for one)
        port = runner.addresses[0][1] if runner.addresses else settings.port
        farm = " (mock farm in-process)" if settings.farm is not None else ""
        announce(f"imagerouter serving on http://{settings.host}:{port}{farm}")
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
