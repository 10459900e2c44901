"""The API middleware: authentication with rate limiting, and every error rendered as JSON."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from imagerouter.auth import AuthError
from imagerouter.errors import ImageRouterError
from imagerouter.server.errors import ApiError, api_error
from imagerouter.server.http import json_response, refuse_unknown_query
from imagerouter.server.keys import authenticator_key, limiter_key, metrics_key, principal_key
from imagerouter.server.openai_views import openai_error
from imagerouter.server.protocol import refused_body
from imagerouter.server.routes import INTERNAL_TAGS, route_spec

__all__ = ["api_middleware"]

log = logging.getLogger(__name__)

#: The status counted for a request whose client closed the connection before its answer
#: (nginx's 499): no answer is sent.
CLIENT_CLOSED = 499

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _client_gone(request: web.Request) -> bool:
    """Has the client closed the request's connection?"""
    transport = request.transport
    return transport is None or transport.is_closing()


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return ApiError(exc.status, code, exc.reason, headers=headers)


@web.middleware
async def api_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Authenticate the API key and take a rate-limit token, for routes that need them;
    render every error as JSON (ours, or OpenAI's shape on OpenAI-compatible routes); and time
    every request of the public API's routes, errors counted with their code (the dashboard,
    admin and metrics routes are not timed: an SSE stream's life is no request latency).

    Every answer of a limited route carries ``RateLimit`` and ``RateLimit-Policy``; a refused
    one is a 429 with ``Retry-After``. One middleware rather than three nested ones: each layer
    costs every request a coroutine and a wrapper on every resume, and all need the route.
    """
    started = time.perf_counter()
    spec = route_spec(request)
    status = 500
    limit_headers: dict[str, str] | None = None
    try:
        try:
            if spec is not None and spec.auth:
                app = request.app
                principal = await app[authenticator_key].authenticate(
                    request.headers.get("Authorization")
                )
                request[principal_key] = principal
                if spec.limit is not None:
                    decision = await app[limiter_key].decide(principal.key_id, spec.limit)
                    limit_headers = decision.headers()
                    if not decision.allowed:
                        raise ApiError(
                            429,
                            "rate_limited",
                            f"rate limit {spec.limit!r} exceeded for this API key; "
                            f"retry in {decision.retry_after_s} s",
                            extra={"policy": spec.limit, "retry_after_s": decision.retry_after_s},
                            headers=limit_headers,
                        )
                if request.query_string:  # every keyed route names what it reads
                    refuse_unknown_query(request, spec.query_names)
            response = await handler(request)
            if limit_headers is not None:
                response.headers.update(limit_headers)
            status = response.status
            return response
        except ApiError as exc:
            if limit_headers is not None:
                exc.headers = {**limit_headers, **exc.headers}
            error = exc
        except AuthError as exc:
            error = api_error(exc, headers={"WWW-Authenticate": 'Bearer realm="imagerouter"'})
        except web.HTTPException as exc:
            if exc.status < 400:  # a redirect: not an error
                status = exc.status
                raise
            error = _from_http_exception(exc)
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            # the client went away mid-request (aiohttp cancels the handler, or its read of
            # the body fails): nobody to answer, and no fault of ours
            if not _client_gone(request):
                if isinstance(exc, asyncio.CancelledError):
                    raise
                log.exception("internal error on %s %s", request.method, request.path)
                error = ApiError(500, "internal_error", "internal server error")
            else:
                status = CLIENT_CLOSED
                log.info("client closed the connection on %s %s", request.method, request.path)
                raise
        except RequestPayloadError as exc:
            error = refused_body(request, exc)
            log.info(
                "refused a malformed body on %s %s: %s", request.method, request.path, error.code
            )
        except ImageRouterError as exc:
            error = api_error(exc)
            if error.status == 503:  # a store or disk briefly away: expected, and said once
                log.warning("%s on %s %s: %s", error.code, request.method, request.path, exc)
            elif error.status >= 500:
                log.exception("imagerouter error on %s %s", request.method, request.path)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            error = ApiError(500, "internal_error", "internal server error")
        status = error.status
        if spec is not None and spec.openai:
            status, body, headers = openai_error(error)
            response = json_response(body, status, headers)
        else:
            response = json_response(error.body(), error.status, error.headers)
        if error.close:
            response.force_close()
        return response
    finally:
        if spec is not None and spec.tag not in INTERNAL_TAGS:
            request.app[metrics_key].observe_request(
                spec.name, request.method, status, time.perf_counter() - started
            )
