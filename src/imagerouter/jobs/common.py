"""What the SQLite and PostgreSQL job stores share beyond their rows (:mod:`imagerouter.jobs.rows`):
the Protocol methods that are the same whatever the database (each store supplies
``_find_account`` and ``_finish``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from imagerouter.jobs.errors import AccountNotFound
from imagerouter.jobs.types import Account
from imagerouter.lifecycle import AsyncResource

__all__ = ["StoreBase"]


class StoreBase(AsyncResource):
    """The Protocol methods both stores implement alike, on top of two store-specific ones;
    each store supplies ``start`` and ``aclose`` (``async with`` calls them)."""

    #: Most expired idempotency keys deleted by one statement. A server back after a long stop
    #: may find a day of keys expired: deleted at once they would hold the writer (and every
    #: submit behind it) for as long, and, on SQLite, their pages in the op's in-memory journal.
    purge_batch = 2_000

    async def _purge_in_steps(self, step: Callable[[int], Awaitable[int]]) -> int:
        """Run ``step(purge_batch)`` (one bounded delete: the rows it deleted) until a step
        deletes fewer than ``purge_batch``; the rows deleted in all."""
        purged = 0
        while True:
            deleted = await step(self.purge_batch)
            purged += deleted
            if deleted < self.purge_batch:
                return purged

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
