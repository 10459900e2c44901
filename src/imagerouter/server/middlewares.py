"""The two middlewares: the one error middleware, and authentication with rate limiting."""

from __future__ import annotations

import logging

from aiohttp import web

from imagerouter.auth import AuthError
from imagerouter.errors import ImageRouterError
from imagerouter.server.errors import ApiError, api_error
from imagerouter.server.http import json_response
from imagerouter.server.keys import authenticator_key, limiter_key, principal_key
from imagerouter.server.openai_views import openai_error
from imagerouter.server.routes import route_spec

__all__ = ["auth_middleware", "error_middleware"]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return ApiError(exc.status, code, exc.reason, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Render every error as JSON: ours, or OpenAI's shape on OpenAI-compatible routes."""
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except AuthError as exc:
        error = api_error(exc, headers={"WWW-Authenticate": 'Bearer realm="imagerouter"'})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http_exception(exc)
    except ImageRouterError as exc:
        error = api_error(exc)
        if error.status >= 500:
            log.exception("imagerouter error on %s %s", request.method, request.path)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        error = ApiError(500, "internal_error", "internal server error")
    spec = route_spec(request)
    if spec is not None and spec.openai:
        status, body, headers = openai_error(error)
        return json_response(body, status, headers)
    return json_response(error.body(), error.status, error.headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Authenticate the API key and take a rate-limit token, for routes that need them.

    Every answer of a limited route carries ``RateLimit`` and ``RateLimit-Policy``; a refused
    one is a 429 with ``Retry-After``.
    """
    spec = route_spec(request)
    if spec is None or not spec.auth:
        return await handler(request)
    app = request.app
    principal = await app[authenticator_key].authenticate(request.headers.get("Authorization"))
    request[principal_key] = principal
    if spec.limit is None:
        return await handler(request)
    decision = await app[limiter_key].decide(principal.key_id, spec.limit)
    headers = decision.headers()
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit {spec.limit!r} exceeded for this API key; "
            f"retry in {decision.retry_after_s} s",
            extra={"policy": spec.limit, "retry_after_s": decision.retry_after_s},
            headers=headers,
        )
    try:
        response = await handler(request)
    except ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        raise
    response.headers.update(headers)
    return response
