"""aiohttp's own errors in the API's shape: the HTTP parser's refusals become JSON too.

aiohttp answers a request it cannot parse (a header or request line over the limit, a bad
method, version or chunked body) from its protocol layer, before any middleware runs, in plain
text. :class:`ApiRunner` is the one place the API's server is built (``imagerouter serve``, the
demo and the tests' servers); it serves connections with :class:`JsonErrorRequestHandler`,
whose ``handle_error`` answers ``{"error": {"code", "message", "field"}}`` with a fitting
status and, as aiohttp does, closes the connection.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import http_exceptions as hx
from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from imagerouter.server.errors import ApiError
from imagerouter.server.http import json_response
from imagerouter.server.shortcut import SUBMIT_ROUTE, SubmitShortcut

__all__ = [
    "MAX_FIELD_BYTES",
    "MAX_LINE_BYTES",
    "ApiRunner",
    "JsonErrorRequestHandler",
    "protocol_error",
    "refused_body",
]

#: The longest header (name and value) the parser reads: aiohttp's default.
MAX_FIELD_BYTES = 8190
#: The longest request line. Two bytes more than a header, so that the limit a ``LineTooLong``
#: names tells which of the two was too long (414 or 431): aiohttp's exception says no more.
MAX_LINE_BYTES = 8192

_MESSAGE_CHARS = 300  # aiohttp's messages quote the offending bytes: keep the answer short


#: A query string in aiohttp's quote of a request line: up to the next space or quote.
_QUERY = re.compile(r"\?[^\s'\"]*")
#: The pointer aiohttp's C parser draws under the quoted bytes: a line of spaces and ``^``.
_POINTER = re.compile(r"\n[ \t]*\^[ \t]*(?=\n|$)")


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


def _line_message(text: str) -> str:
    """aiohttp's message about a request line it refused, which quotes the line, with the
    query string left out (it may carry a token: an error body must not repeat it) and, when
    one was, without the pointer under the line, which would then point elsewhere."""
    without = _QUERY.sub("", text)
    if without != text:
        without = _POINTER.sub("", without)
    return _short(without)


#: A quoted literal in aiohttp's messages (``b'…'``, ``'…'``, ``"…"``), escapes included.
_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\"")


def _reason(text: str) -> str:
    """aiohttp's message about a header or a message it refused, without the bytes it
    quotes (a header's value may be the client's key): the C parser quotes them on the lines
    after its reason, the Python one after a colon."""
    reason = _QUOTED.sub("", text.split("\n", 1)[0]).rstrip(" :")
    return _short(reason or "malformed request")


def protocol_error(status: int, exc: BaseException | None) -> ApiError:
    """The answer to a request aiohttp's protocol layer refused (or a fault outside the app)."""
    if isinstance(exc, hx.LineTooLong):
        if exc.args[1] == MAX_FIELD_BYTES:
            return ApiError(
                431,
                "header_too_large",
                f"a request header is longer than {MAX_FIELD_BYTES} bytes",
                field="headers",
            )
        return ApiError(
            414,
            "request_line_too_long",
            f"the request line is longer than {MAX_LINE_BYTES} bytes",
        )
    if isinstance(exc, hx.BadHttpMessage) and "Too many headers" in exc.message:
        return ApiError(431, "header_too_large", "too many request headers", field="headers")
    if isinstance(exc, hx.BadHttpMethod):
        return ApiError(400, "bad_request_line", _line_message(f"bad method: {exc.message}"))
    if isinstance(exc, hx.BadStatusLine | hx.InvalidURLError):
        return ApiError(400, "bad_request_line", _line_message(exc.message))
    if isinstance(exc, hx.InvalidHeader):
        return ApiError(400, "bad_header", _reason(exc.message), field="headers")
    if isinstance(exc, hx.PayloadEncodingError):
        return ApiError(400, "bad_body_encoding", _short(exc.message), field="body")
    if isinstance(exc, hx.HttpProcessingError) and 400 <= status < 500:
        return ApiError(status, "bad_http_message", _reason(exc.message or ""))
    if status == 504:
        return ApiError(504, "timeout", "the request took too long")
    return ApiError(500, "internal_error", "internal server error")


def refused_body(request: web.BaseRequest, exc: RequestPayloadError) -> ApiError:
    """The answer to a body the parser refused while a handler read it (a ``Content-Encoding``
    it cannot decode, a broken chunk): the client's mistake, as a refusal before the handler
    is. The connection is closed after the answer (the parser cannot find the next request),
    and the body is marked read, so that aiohttp does not read the rest of it only to fail
    again and log that as an unhandled error."""
    request.content.feed_eof()
    cause = exc.__cause__
    if isinstance(cause, hx.HttpProcessingError):
        error = protocol_error(cause.code if 400 <= cause.code < 500 else 400, cause)
    else:
        error = ApiError(400, "bad_http_message", _short(str(exc) or "malformed request body"))
    error.close = True
    return error


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors in the API's JSON shape."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer (it logs, and refuses once a response has begun), made JSON; the
        connection is closed after it, as aiohttp does. A request the parser refused is the
        client's mistake: logged in one line at INFO, without its bytes (a header may hold a
        key), where aiohttp logs an error with a traceback that would page someone."""
        error = protocol_error(status, exc)
        if status < 500 and isinstance(exc, hx.HttpProcessingError):
            self.logger.info(
                "refused a malformed request from %s: %d %s",
                request.remote,
                error.status,
                error.code,
            )
            if request.writer.output_size > 0:  # as aiohttp: the answer has begun
                raise ConnectionError("a response was already sent; the connection is broken")
        else:
            super().handle_error(request, status, exc, message)
        response = json_response(error.body(), error.status, error.headers)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    """aiohttp's low-level server, with :class:`JsonErrorRequestHandler` for connections."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """The runner of the job API: an ``AppRunner`` whose parser errors answer JSON, with the
    header and request-line limits of :data:`MAX_FIELD_BYTES` and :data:`MAX_LINE_BYTES`, and
    whose submits take the :class:`~imagerouter.server.shortcut.SubmitShortcut`."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_field_size", MAX_FIELD_BYTES)
        kwargs.setdefault("max_line_size", MAX_LINE_BYTES)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, whose connections use our handler: it adds no state of its own.
        server.__class__ = _JsonErrorServer
        if any(route.name == SUBMIT_ROUTE for route in self.app.router.routes()):
            server.request_handler = SubmitShortcut(self.app, server.request_handler)
        return server
