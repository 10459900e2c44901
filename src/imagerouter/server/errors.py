"""HTTP errors of the job API: one exception type, rendered by the one error middleware.

Every error body reads ``{"error": {"code", "message", "field", ...extra}}``; on the
OpenAI-compatible route the same error is rendered in OpenAI's shape instead
(``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from imagerouter.config import field_path

__all__ = ["ApiError", "from_validation_error"]


class ApiError(Exception):
    """An HTTP error answer: status, machine code, human message, the field at fault.

    ``extra`` is merged into the error object (e.g. ``balance`` and ``price`` on a 402);
    ``headers`` go on the response (e.g. ``Retry-After``).
    """

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
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [part for part in error["loc"] if not str(part).startswith("function-")]
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
