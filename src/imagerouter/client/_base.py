"""What the sync and async clients share: settings, request building, answer handling."""

from __future__ import annotations

import os
from typing import Any

import httpx

from imagerouter.client.errors import (
    APIConnectionError,
    APITimeoutError,
    error_from_response,
)
from imagerouter.client.models import Job, JobPage

__all__ = ["DEFAULT_BASE_URL", "ENV_API_KEY", "ENV_BASE_URL", "Base"]

ENV_API_KEY = "IMAGEROUTER_API_KEY"
ENV_BASE_URL = "IMAGEROUTER_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
FINAL_EVENT_TYPES = frozenset({"job.completed", "job.failed", "job.canceled"})


class Base:
    """Settings and pure helpers; the subclasses do the I/O."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout_s: float) -> None:
        self.base_url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get(ENV_API_KEY)
        self.timeout_s = timeout_s

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {**headers, **(extra or {})}

    @staticmethod
    def _submit_body(prompt: str, model: str, fields: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        body.update({name: value for name, value in fields.items() if value is not None})
        return body

    @staticmethod
    def _list_params(status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return params

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        """The answer's JSON, or the typed error it stands for."""
        if response.is_error:
            raise error_from_response(response)
        return response.json()

    @staticmethod
    def _page(body: dict[str, Any]) -> JobPage:
        return JobPage(
            [Job.from_json(row) for row in body["data"]], body["has_more"], body["next_cursor"]
        )

    @staticmethod
    def _transport_error(exc: httpx.TransportError) -> APIConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"request timed out: {exc}")
        return APIConnectionError(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _is_final_event(event_type: str) -> bool:
        return event_type in FINAL_EVENT_TYPES
