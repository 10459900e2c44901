"""Accounts, their API keys and their credit ledger, on SQLite
(:class:`~imagerouter.jobs.store.AccountStore`).

Revocations by other processes on the same file (another server, ``imagerouter keys revoke``)
are seen by counting the revoked keys every ``revocation_poll_s`` (0.25 s), while someone
listens: a revocation is final, so the count only grows, and a change means some key was
revoked. It needs no table of its own (a partial index keeps the count cheap) and nothing of
the revoking process, so the CLI, older servers and a hand-run ``UPDATE`` are all seen.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from imagerouter.jobs.errors import AccountNotFound
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.rows import ACCOUNT_COLUMNS, API_KEY_SELECT, LEDGER_COLUMNS
from imagerouter.jobs.sqlite.base import SQLiteBase, log
from imagerouter.jobs.store import MAX_BALANCE, RevocationListener, check_grant, too_much
from imagerouter.jobs.types import Account, ApiKeyRecord, LedgerEntry

__all__ = ["SQLiteAccounts"]

_COUNT_REVOKED = "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"


class SQLiteAccounts(SQLiteBase):
    """Accounts, keys and credits (``get_account`` and ``find_account`` come from
    :class:`~imagerouter.jobs.common.StoreBase`, over ``_find_account``)."""

    async def create_account(self, name: str) -> Account:
        """The account called ``name``, created with an empty wallet if new."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> Account:
            conn.execute(
                "INSERT OR IGNORE INTO accounts (id, name, balance, created_at) "
                "VALUES (?, ?, 0, ?)",
                (new_id("acct", 16), name, now),
            )
            row = conn.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,)
            ).fetchone()
            return Account(*row)

        return await self.thread.run(op)

    async def _find_account(self, column: str, value: str) -> Account | None:
        sql = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?"
        row = await self.thread.run(lambda conn: conn.execute(sql, (value,)).fetchone())
        return None if row is None else Account(*row)

    async def grant_credits(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add ``amount`` (> 0) credits; returns the new balance (at most MAX_BALANCE)."""
        check_grant(amount)
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance <= ? "
                "RETURNING balance",
                (amount, account_id, MAX_BALANCE - amount),
            ).fetchone()
            if row is None:
                found = conn.execute("SELECT balance FROM accounts WHERE id = ?", (account_id,))
                balance = found.fetchone()
                if balance is None:
                    raise AccountNotFound(account_id)
                raise ValueError(too_much(balance[0], amount))
            conn.execute(
                "INSERT INTO ledger (account_id, kind, amount, balance_after, note, created_at) "
                "VALUES (?, 'grant', ?, ?, ?, ?)",
                (account_id, amount, row[0], note, now),
            )
            return int(row[0])

        return await self.thread.run(op)

    async def ledger(
        self, account_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger, newest first."""
        sql = (
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?"
        )
        args = (account_id, before_id if before_id is not None else 2**62, limit)
        rows = await self.thread.run(lambda conn: conn.execute(sql, args).fetchall())
        return [LedgerEntry(*row) for row in rows]

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key's lookup id and hash."""
        await self.thread.run(
            lambda conn: conn.execute(
                "INSERT INTO api_keys (id, account_id, secret_hash, name, created_at, routing) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.account_id,
                    record.secret_hash,
                    record.name,
                    record.created_at,
                    record.routing,
                ),
            )
        )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this lookup id, or None."""
        sql = f"{API_KEY_SELECT} WHERE k.id = ?"
        row = await self.thread.run(lambda conn: conn.execute(sql, (key_id,)).fetchone())
        return None if row is None else ApiKeyRecord(*row)

    async def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one account), oldest first."""
        sql = f"{API_KEY_SELECT} WHERE ? IS NULL OR k.account_id = ? ORDER BY k.created_at"
        rows = await self.thread.run(
            lambda conn: conn.execute(sql, (account_id, account_id)).fetchall()
        )
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke an active key; False if none."""
        now = self._clock.wall()
        cursor = await self.thread.run(
            lambda conn: conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
        )
        return cursor.rowcount > 0

    def subscribe_revocations(self, listener: RevocationListener) -> Callable[[], None]:
        """Call ``listener(None)`` within ``revocation_poll_s`` of any key's revocation on
        this file, by any process (the count of revoked keys tells that some key was, not
        which). The first subscriber starts the watch; :meth:`aclose` stops it."""
        self._revocation_listeners.append(listener)
        if self._revocation_watch is None:
            self._revocation_watch = asyncio.get_running_loop().create_task(
                self._watch_revocations(), name=f"sqlite-revocations:{self.path.name}"
            )

        def unsubscribe() -> None:
            if listener in self._revocation_listeners:
                self._revocation_listeners.remove(listener)

        return unsubscribe

    async def _count_revoked(self) -> int:
        row = await self.thread.run(lambda conn: conn.execute(_COUNT_REVOKED).fetchone())
        return int(row[0])

    async def _watch_revocations(self) -> None:
        seen = -1  # so the first count tells too: a revocation before it is not missed
        while True:
            if self._revocation_listeners:
                try:
                    count = await self._count_revoked()
                except sqlite3.Error as exc:  # a busy file: look again next time
                    log.warning("counting revoked keys failed: %s", exc)
                else:
                    if count != seen:
                        self._tell_revoked()
                    seen = count
            await asyncio.sleep(self.revocation_poll_s)

    def _tell_revoked(self) -> None:
        for listener in list(self._revocation_listeners):
            try:
                listener(None)
            except Exception:
                log.exception("key revocation listener %r failed", listener)
