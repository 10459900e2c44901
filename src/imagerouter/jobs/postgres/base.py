"""What every part of the PostgreSQL store stands on: its URL and pool, the group-commit
engine, the event feed, the clock and the lifecycle (migrate, start, aclose)."""

from __future__ import annotations

from typing import Any

import asyncpg

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.jobs import migrations
from imagerouter.jobs.common import StoreBase
from imagerouter.jobs.errors import StoreError
from imagerouter.jobs.postgres.connection import (
    GuardedPool,
    connect_kwargs,
    init_connection,
    parse_url,
    redact_url,
)
from imagerouter.jobs.postgres.engine import GroupCommit
from imagerouter.jobs.postgres.feed import EventFeed
from imagerouter.jobs.rules import AUDIT_BY_STATUS, AUDIT_TOTALS

__all__ = ["PostgresBase"]


class PostgresBase(StoreBase):
    """The PostgreSQL store's state and lifecycle; the aggregates are mixins over it.

    Its arguments are :class:`~imagerouter.jobs.postgres.store.PostgresJobStore`'s.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_min: int | None = None,
        pool_max: int | None = None,
        batch_max: int = 64,
        parallel: int = 4,
        poll_interval_s: float = 1.0,
        migrate: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.dsn, own = parse_url(url)
        self.schema = schema or own.get("schema") or "public"
        self.pool_min = pool_min if pool_min is not None else int(own.get("pool_min", 1))
        self.pool_max = pool_max if pool_max is not None else int(own.get("pool_max", 10))
        self.batch_max = batch_max
        self.parallel = max(1, min(parallel, self.pool_max - 1 or 1))
        self.migrate = migrate
        #: The NOTIFY channel of this schema.
        self.channel = f"imagerouter_events.{self.schema}"
        #: The NOTIFY channel of this schema's key revocations.
        self.keys_channel = f"imagerouter_keys.{self.schema}"
        #: The NOTIFY channel of this schema's peer messages.
        self.peers_channel = f"imagerouter_peers.{self.schema}"
        self._clock = clock or MonotonicClock()
        self._pool: GuardedPool = None  # type: ignore[assignment]
        self._feed = EventFeed(
            self.dsn,
            connect_kwargs(self.schema),
            self.channel,
            poll_interval_s,
            self.keys_channel,
            self.peers_channel,
        )
        self._engine = GroupCommit(
            self._feed, self.channel, batch_max=batch_max, parallel=self.parallel
        )
        #: The account of each job this store leased, so finishing it needs no lookup.
        self._job_accounts: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r}, schema={self.schema!r})"

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate (unless told not to), open the pool, and start following events."""
        if self.migrate:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                await migrations.migrate(conn, self.schema)
            finally:
                await conn.close()
        self._pool = GuardedPool(
            await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min,
                max_size=self.pool_max,
                init=init_connection,
                **connect_kwargs(self.schema),
            )
        )
        self._engine.pool = self._pool
        try:
            await self._check_schema()
            await self._feed.start(self._pool)
        except BaseException:
            await self._pool.close()
            raise

    async def _check_schema(self) -> None:
        async with self._pool.acquire() as conn:
            found = await migrations.status(conn, self.schema)
        if found.pending:
            raise StoreError(
                f"schema {self.schema!r} of {redact_url(self.url)} lacks migrations "
                f"{found.pending}; run 'imagerouter db migrate'"
            )

    async def aclose(self) -> None:
        """Finish queued writes, stop following events and close the pool."""
        await self._engine.aclose()
        await self._feed.aclose()
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self._pool.fetchval("SELECT 1")

    # --- for tests, tools and the benchmark ----------------------------------------------------

    @property
    def feed(self) -> EventFeed:
        """The event feed (its counters: ``notified``, ``reads``, ``reconnects``)."""
        return self._feed

    @property
    def commits(self) -> int:
        """Write transactions committed."""
        return self._engine.commits

    @property
    def ops(self) -> int:
        """Write operations those transactions ran."""
        return self._engine.ops

    async def audit(self) -> dict[str, Any]:
        """Totals that must always agree: balances against the ledger, jobs against debits."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            totals = {k: int(await conn.fetchval(sql)) for k, sql in AUDIT_TOTALS.items()}
            return {**totals, "by_status": dict(await conn.fetch(AUDIT_BY_STATUS))}
