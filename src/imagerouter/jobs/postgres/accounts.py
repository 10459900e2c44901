"""Accounts, their API keys and their credit ledger, on PostgreSQL
(:class:`~imagerouter.jobs.store.AccountStore`)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from imagerouter.jobs.errors import AccountNotFound
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.engine import Tx
from imagerouter.jobs.rows import ACCOUNT_COLUMNS, API_KEY_SELECT, LEDGER_COLUMNS
from imagerouter.jobs.store import MAX_BALANCE, RevocationListener, check_grant, too_much
from imagerouter.jobs.types import Account, ApiKeyRecord, LedgerEntry

__all__ = ["PostgresAccounts"]


class PostgresAccounts(PostgresBase):
    """Accounts, keys and credits (``get_account`` and ``find_account`` come from
    :class:`~imagerouter.jobs.common.StoreBase`, over ``_find_account``)."""

    async def create_account(self, name: str) -> Account:
        """The account called ``name``, created with an empty wallet if new."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: Tx) -> Account:
            await conn.execute(
                "INSERT INTO accounts (id, name, balance, created_at) VALUES ($1, $2, 0, $3) "
                "ON CONFLICT (name) DO NOTHING",
                new_id("acct", 16),
                name,
                now,
            )
            row = await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1", name
            )
            return Account(*row)

        return await self._engine.solo(op)

    async def _find_account(self, column: str, value: str) -> Account | None:
        row = await self._pool.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = $1", value
        )
        return None if row is None else Account(*row)

    async def grant_credits(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add ``amount`` (> 0) credits; returns the new balance (at most MAX_BALANCE)."""
        check_grant(amount)
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: Tx) -> int:
            balance = await conn.fetchval(
                "UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance <= $3 "
                "RETURNING balance",
                amount,
                account_id,
                MAX_BALANCE - amount,
            )
            if balance is None:
                before = await conn.fetchval(
                    "SELECT balance FROM accounts WHERE id = $1", account_id
                )
                if before is None:
                    raise AccountNotFound(account_id)
                raise ValueError(too_much(before, amount))
            await conn.execute(
                "INSERT INTO ledger (account_id, kind, amount, balance_after, note, created_at) "
                "VALUES ($1, 'grant', $2, $3, $4, $5)",
                account_id,
                amount,
                balance,
                note,
                now,
            )
            return int(balance)

        return await self._engine.batched(account_id, op)

    async def ledger(
        self, account_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND id < $2 "
            "ORDER BY id DESC LIMIT $3",
            account_id,
            before_id if before_id is not None else 2**62,
            limit,
        )
        return [LedgerEntry(*row) for row in rows]

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key's lookup id and hash."""
        await self._pool.execute(
            "INSERT INTO api_keys (id, account_id, secret_hash, name, created_at, routing) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            record.id,
            record.account_id,
            record.secret_hash,
            record.name,
            float(record.created_at),
            record.routing,
        )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this lookup id, or None."""
        row = await self._pool.fetchrow(f"{API_KEY_SELECT} WHERE k.id = $1", key_id)
        return None if row is None else ApiKeyRecord(*row)

    async def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one account), oldest first."""
        rows = await self._pool.fetch(
            f"{API_KEY_SELECT} WHERE $1::text IS NULL OR k.account_id = $1 "
            "ORDER BY k.created_at, k.id",
            account_id,
        )
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke an active key; False if none. The same statement, so the same transaction,
        notifies the keys channel with the key's id: every replica listening is told when it
        commits, whoever revoked (a server or ``imagerouter keys revoke``)."""
        rows = await self._pool.fetch(
            "WITH revoked AS (UPDATE api_keys SET revoked_at = $1 "
            "WHERE id = $2 AND revoked_at IS NULL RETURNING id) "
            "SELECT pg_notify($3, id) FROM revoked",
            self._clock.wall(),
            key_id,
            self.keys_channel,
        )
        return bool(rows)

    def subscribe_revocations(self, listener: RevocationListener) -> Callable[[], None]:
        """Call ``listener`` with each key id revoked on this schema, by any process, as soon
        as its notification arrives; with None after the listener connection reconnects."""
        self._feed.revocation_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._feed.revocation_listeners:
                self._feed.revocation_listeners.remove(listener)

        return unsubscribe
