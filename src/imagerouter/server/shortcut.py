"""The submit's shortcut past aiohttp's routing: ``POST /v1/jobs`` goes straight to its handler.

Every job starts with a submit, so under launch-week load most requests are ``POST /v1/jobs``.
aiohttp finds a request's route (matching the path against the route table), freezes a match
info for it and wraps the handler in the middleware chain, a few microseconds a request.
:class:`SubmitShortcut` stands in front of the app's handler: a request whose method and raw
path are exactly the submit route's gets the route's match info and the app's middleware chain
around its handler, both made once at start-up; every other request (a query string, an
``Expect`` header, any other route) takes aiohttp's usual way. What the client sees is the same
either way: the same middlewares (authentication, rate limit, errors, metrics) and answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

__all__ = ["SUBMIT_ROUTE", "SubmitShortcut"]

#: The route the shortcut serves, by its name in the route table (its method and path are
#: the table's).
SUBMIT_ROUTE = "jobs.submit"

AppHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SubmitShortcut:
    """The server's request handler: ``POST /v1/jobs`` straight to the submit route, the rest
    to ``app_handler`` (the application's own)."""

    def __init__(self, app: web.Application, app_handler: AppHandler) -> None:
        self._app_handler = app_handler
        route = next(route for route in app.router.routes() if route.name == SUBMIT_ROUTE)
        self._method, self._path = route.method, route.resource.canonical
        # What aiohttp's resolve would make for every submit, made once: it is frozen, and
        # nothing on the submit's way changes a match info.
        match_info = UrlMappingMatchInfo({}, route)
        match_info.add_app(app)
        match_info.freeze()
        self._match_info = match_info
        # the app's middlewares around the handler, outermost first, as aiohttp chains them
        handler: AppHandler = route.handler
        for middleware in reversed(app.middlewares):
            handler = partial(middleware, handler=handler)
        self._chain = handler

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Answer ``request``."""
        if (
            request.raw_path != self._path
            or request.method != self._method
            or hdrs.EXPECT in request.headers
        ):
            return await self._app_handler(request)
        request._match_info = self._match_info
        return await self._chain(request)
