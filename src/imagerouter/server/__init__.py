"""The job API server: aiohttp app, routes, middlewares, OpenAPI document, settings."""

from imagerouter.server.app import create_app
from imagerouter.server.openapi import openapi_document
from imagerouter.server.serve import run_server
from imagerouter.server.settings import ServerSettings, load_router_settings, load_server_settings

__all__ = [
    "ServerSettings",
    "create_app",
    "load_router_settings",
    "load_server_settings",
    "openapi_document",
    "run_server",
]
