"""The job API server: aiohttp app, routes, middlewares, OpenAPI document, settings.

The settings import without the ``server`` extra (``imagerouter keys``, the load tests and
``serve``'s own door read them); the app, its OpenAPI document and ``run_server`` are imported
when first asked for, after checking that ``imagerouter-framework[server]`` is installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imagerouter.extras import require
from imagerouter.server.settings import ServerSettings, load_router_settings, load_server_settings

if TYPE_CHECKING:
    from imagerouter.server.app import create_app
    from imagerouter.server.openapi import openapi_document
    from imagerouter.server.serve import run_server

__all__ = [
    "ServerSettings",
    "create_app",
    "load_router_settings",
    "load_server_settings",
    "openapi_document",
    "run_server",
]

_LAZY = {
    "create_app": "imagerouter.server.app",
    "openapi_document": "imagerouter.server.openapi",
    "run_server": "imagerouter.server.serve",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require("server", "the job API server")
    return getattr(importlib.import_module(_LAZY[name]), name)
