"""The client's exceptions, mirroring the API's error answers; mapped in one place.

::

    ClientError
    ├── APIConnectionError           the request never got an answer
    │   └── APITimeoutError
    ├── WaitTimeout                  wait() gave up before the job finished (.job: last seen)
    └── APIStatusError               an error answer: .status, .code, .message, .field, .body
        ├── BadRequest               400
        ├── AuthenticationError      401
        ├── InsufficientCredits      402  (.balance, .price)
        ├── PermissionDenied         403
        ├── NotFound                 404
        ├── Conflict                 409
        ├── PayloadTooLarge          413
        ├── ValidationError          422  (.field, .errors)
        ├── RateLimitError           429  (.retry_after seconds)
        └── ServerError              5xx

Every error answer reads ``{"error": {"code", "message", "field", ...}}``;
:func:`error_from_response` picks the class by the error's ``code`` first (so an
``insufficient_credits`` is :class:`InsufficientCredits` whatever the status), then by status.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequest",
    "ClientError",
    "Conflict",
    "InsufficientCredits",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "WaitTimeout",
    "error_from_response",
]


class ClientError(Exception):
    """Root of every error the imagerouter client raises."""


class APIConnectionError(ClientError):
    """The request got no answer: connection refused or reset, DNS, TLS."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class WaitTimeout(ClientError):
    """``wait`` gave up before the job reached a final state; ``job`` is the last seen."""

    def __init__(self, job_id: str, timeout_s: float, job: Any = None) -> None:
        self.job_id, self.timeout_s, self.job = job_id, timeout_s, job
        super().__init__(f"job {job_id} was not final after {timeout_s:g} s")


class APIStatusError(ClientError):
    """An error answer of the API."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.status, self.code, self.message, self.field = status, code, message, field
        self.body = body or {}
        self.headers = headers or httpx.Headers()
        super().__init__(f"{status} {code}: {message}")

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object of the answer (extra fields included)."""
        return self.body.get("error") or {}


class BadRequest(APIStatusError):
    """400: not JSON, an unknown model, a bad cursor or header."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed, unknown or revoked."""


class InsufficientCredits(APIStatusError):
    """402: the job costs more than the balance; nothing was charged."""

    @property
    def balance(self) -> int | None:
        """The account's balance when the job was refused."""
        return self.error.get("balance")

    @property
    def price(self) -> int | None:
        """What the job would have cost."""
        return self.error.get("price")


class PermissionDenied(APIStatusError):
    """403: not allowed (a bad or expired media URL signature, for one)."""


class NotFound(APIStatusError):
    """404: no such job (for this account), delivery or route."""


class Conflict(APIStatusError):
    """409: the job is already final, an Idempotency-Key is in flight, a delivery is running."""


class PayloadTooLarge(APIStatusError):
    """413: the request body is over the server's limit."""


class ValidationError(APIStatusError):
    """422: a field is invalid (``field`` names it, ``errors`` lists every problem)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every problem found: ``{"field", "reason"}``."""
        return list(self.error.get("errors") or [])


class RateLimitError(APIStatusError):
    """429: rate limited; retry after ``retry_after`` seconds."""

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait, from ``Retry-After`` or the error body."""
        header = self.headers.get("Retry-After")
        if header:
            try:
                return float(header)
            except ValueError:
                pass
        value = self.error.get("retry_after_s")
        return float(value) if value is not None else None


class ServerError(APIStatusError):
    """5xx: the server failed."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: InsufficientCredits,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimitError,
}
_BY_CODE: dict[str, type[APIStatusError]] = {
    "insufficient_credits": InsufficientCredits,
    "rate_limited": RateLimitError,
    "validation_error": ValidationError,
    "invalid_api_key": AuthenticationError,
}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    status = response.status_code
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or response.reason_phrase or "error")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    return cls(status, code, message, field=error.get("field"), body=body, headers=response.headers)
