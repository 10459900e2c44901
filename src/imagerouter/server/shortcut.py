"""The submit's shortcut past aiohttp's routing: ``POST /v1/jobs`` goes straight to its handler.

Every job starts with a submit, so under launch-week load most requests are ``POST /v1/jobs``.
aiohttp finds a request's route (matching the path against the route table), freezes a match
info for it and wraps the handler in the middleware chain, a few microseconds a request.
:class:`SubmitShortcut` stands in front of the app's handler: a request whose method and raw
path are exactly the submit's gets the route's match info made once at start-up and goes
through the same :func:`~imagerouter.server.middlewares.api_middleware` to the same handler;
every other request (a query string, an ``Expect`` header, any other route) takes aiohttp's
usual way. What the client sees is the same either way: the same authentication, rate limit,
errors, metrics and answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from imagerouter.server.middlewares import api_middleware

__all__ = ["SubmitShortcut"]

#: The route the shortcut serves: its method, raw path and name in the route table.
SUBMIT_METHOD, SUBMIT_PATH, SUBMIT_ROUTE = "POST", "/v1/jobs", "jobs.submit"

AppHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SubmitShortcut:
    """The server's request handler: ``POST /v1/jobs`` straight to the submit route, the rest
    to ``app_handler`` (the application's own)."""

    def __init__(self, app: web.Application, app_handler: AppHandler) -> None:
        self._app_handler = app_handler
        route = next(route for route in app.router.routes() if route.name == SUBMIT_ROUTE)
        assert route.method == SUBMIT_METHOD
        # What aiohttp's resolve would make for every submit, made once: it is frozen, and
        # nothing on the submit's way changes a match info.
        match_info = UrlMappingMatchInfo({}, route)
        match_info.add_app(app)
        match_info.freeze()
        self._match_info = match_info
        self._handler = route.handler

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Answer ``request``."""
        if (
            request.raw_path != SUBMIT_PATH
            or request.method != SUBMIT_METHOD
            or hdrs.EXPECT in request.headers
        ):
            return await self._app_handler(request)
        request._match_info = self._match_info
        return await api_middleware(request, self._handler)
