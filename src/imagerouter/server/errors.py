"""HTTP errors of the job API: one exception type, rendered by the one error middleware.

Every error body reads ``{"error": {"code", "message", "field", ...extra}}``; on the
OpenAI-compatible route the same error is rendered in OpenAI's shape instead
(``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from imagerouter.auth import AuthError
from imagerouter.config import field_path
from imagerouter.errors import (
    AuthFailed,
    ConfigError,
    ContentRejected,
    ImageRouterError,
    InvalidRequest,
    MissingExtra,
    ModelNotServed,
    ModelUnavailable,
    NoProviderAvailable,
    OutputUnusable,
    PluginError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownModel,
    UnsupportedRequest,
)
from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    InvalidCursor,
    JobFinished,
    JobNotFound,
    StorageFull,
    StoreError,
    StoreUnavailable,
)
from imagerouter.preferences import PriceAboveMax, RoutingRejected
from imagerouter.storage.base import ProviderOutputError, StorageError

__all__ = ["ERROR_STATUS", "ApiError", "api_error", "from_validation_error", "status_for"]

#: Every error class the core raises, and the HTTP status it becomes when it reaches the API
#: (its ``code`` is the machine-readable code). One table: the views and the error middleware
#: both read it, and a test checks that every error class of the core is here.
ERROR_STATUS: Mapping[type[ImageRouterError], int] = {
    ImageRouterError: 500,
    ConfigError: 500,  # the server's own configuration, never the client's
    MissingExtra: 500,  # the server's installation lacks an extra it was configured to use
    PluginError: 500,
    UnknownModel: 400,  # names the model and lists the known ones
    UnsupportedRequest: 422,  # names the field the model cannot serve
    ModelUnavailable: 422,  # the model is known, but no provider here serves it (field: model)
    # A provider's answer ends a job (its error says which), never a request of the API.
    ProviderError: 502,
    RateLimited: 502,
    ProviderUnavailable: 502,
    ProviderTimeout: 502,
    AuthFailed: 502,
    ContentRejected: 502,
    InvalidRequest: 502,
    ModelNotServed: 502,
    NoProviderAvailable: 503,
    StoreError: 500,
    # The database is unreachable or its disk full: a 503 with Retry-After, nothing stored.
    StoreUnavailable: 503,
    StorageFull: 503,
    JobNotFound: 404,  # also another account's job: its existence is not revealed
    AccountNotFound: 404,
    JobFinished: 409,  # canceling a job that already ended
    InsufficientCredits: 402,  # with the balance and the price
    InvalidCursor: 400,
    RoutingRejected: 422,  # names the routing field at fault (routing.only[1], …)
    PriceAboveMax: 422,  # routing.max_price_credits below the price: refused, nothing charged
    AuthError: 401,
    StorageError: 502,
    OutputUnusable: 502,  # a provider's output the storage could not take
    ProviderOutputError: 502,
}


def status_for(error: type[ImageRouterError]) -> int:
    """The HTTP status of an error class: its own entry, else its nearest listed ancestor's."""
    for cls in error.__mro__:
        status = ERROR_STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


class ApiError(Exception):
    """An HTTP error answer: status, machine code, human message, the field at fault.

    ``extra`` is merged into the error object (e.g. ``balance`` and ``price`` on a 402);
    ``headers`` go on the response (e.g. ``Retry-After``); ``close`` closes the connection
    after the answer (a request whose body the parser could not read to its end).
    """

    close = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """The JSON error body in our own shape."""
        return {
            "error": {"code": self.code, "message": self.message, "field": self.field, **self.extra}
        }


def from_validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming the first bad field (dotted path) and why; all problems in ``errors``."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [part for part in error["loc"] if not str(part).startswith("function-")]
        if error["type"] == "finite_number":  # where inside the field (metadata.a.b), as a
            loc += error.get("ctx", {}).get("loc", ())  # NUL character's error says
        reason = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append({"field": field_path(loc, prefix) or None, "reason": reason})
    first = problems[0]
    where = first["field"] or "the request body"
    return ApiError(
        422,
        "validation_error",
        f"{where}: {first['reason']}",
        field=first["field"],
        extra={"errors": problems},
    )


def api_error(
    exc: ImageRouterError,
    message: str | None = None,
    *,
    field: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """The HTTP answer for a core error: status from :data:`ERROR_STATUS`, code from the error;
    an error that says when to retry (``retry_after_s``) carries ``Retry-After``."""
    if field is None and isinstance(exc, UnsupportedRequest):
        field = exc.field
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        seconds = str(max(1, math.ceil(retry_after_s)))
        headers = {"Retry-After": seconds, **(headers or {})}
        extra = {"retry_after_s": retry_after_s, **(extra or {})}
    return ApiError(
        status_for(type(exc)),
        exc.code,
        message or str(exc),
        field=field,
        extra=extra,
        headers=headers,
    )
