"""What the SQLite and PostgreSQL job stores share: row and cursor codecs, and the Protocol
methods that are the same whatever the database (each store supplies ``_find_account`` and
``_finish``)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, Self

from imagerouter.jobs.errors import AccountNotFound, InvalidCursor
from imagerouter.jobs.types import Account, Delivery, StoredResponse

__all__ = [
    "StoreBase",
    "decode_cursor",
    "delivery_from_row",
    "dumps",
    "encode_cursor",
    "response_doc",
]


def dumps(value: Any) -> str:
    """Compact JSON, as the stores keep it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """A :class:`Delivery` from the deliveries query both stores run."""
    return Delivery(*row[:13], replay=bool(row[13]), last_error=row[14])


def encode_cursor(seq: int) -> str:
    """An opaque ``GET /v1/jobs`` cursor for the job with sequence number ``seq``."""
    return base64.urlsafe_b64encode(f"j{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The sequence number in a cursor; InvalidCursor if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("j"):
            raise ValueError(cursor)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None


def response_doc(response: StoredResponse) -> dict[str, Any]:
    """A stored idempotent response as the JSON document both stores keep."""
    return {"status": response.status, "body": response.body, "headers": response.headers}


class StoreBase:
    """The Protocol methods both stores implement alike, on top of two store-specific ones."""

    async def open(self) -> None:  # pragma: no cover - every store defines it
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - every store defines it
        raise NotImplementedError

    async def _find_account(self, column: str, value: str) -> Account | None:
        raise NotImplementedError  # pragma: no cover

    async def _finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        payload: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        raise NotImplementedError  # pragma: no cover

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def get_account(self, account_id: str) -> Account:
        """The account by id (AccountNotFound if none)."""
        account = await self._find_account("id", account_id)
        if account is None:
            raise AccountNotFound(account_id)
        return account

    async def find_account(self, name_or_id: str) -> Account | None:
        """The account by name or id, or None."""
        return await self._find_account("name", name_or_id) or await self._find_account(
            "id", name_or_id
        )

    async def complete_job(
        self,
        job_id: str,
        owner: str,
        result: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        """Write ``completed`` once, while ``owner`` holds the lease."""
        return await self._finish(job_id, owner, "completed", result, attempts)

    async def fail_job(
        self,
        job_id: str,
        owner: str,
        error: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        """Write ``failed`` and its refund once, while ``owner`` holds the lease."""
        return await self._finish(job_id, owner, "failed", error, attempts)
