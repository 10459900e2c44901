"""Running the server: ``web.run_app`` with graceful shutdown on SIGTERM and SIGINT.

aiohttp turns either signal into a graceful exit: it stops accepting connections, lets
in-flight requests finish for ``shutdown_grace_s``, then runs the cleanup contexts, which stop
the worker pool (finishing or handing back running jobs) and close the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from imagerouter.config import Settings
from imagerouter.server.app import create_app
from imagerouter.server.settings import ServerSettings

__all__ = ["run_server"]


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

    async def say_ready(app: web.Application) -> None:
        farm = " (mock farm in-process)" if settings.farm is not None else ""
        announce(f"imagerouter serving on http://{settings.host}:{settings.port}{farm}")

    app.on_startup.append(say_ready)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_grace_s,
        print=None,
        access_log=None,
        handle_signals=True,
    )
