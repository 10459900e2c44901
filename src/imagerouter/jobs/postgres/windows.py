"""Windows kept on PostgreSQL (:class:`~imagerouter.jobs.store.WindowStore`): one row a
window, the latest end kept; every replica on the schema reads them when it starts."""

from __future__ import annotations

from imagerouter.jobs.postgres.base import PostgresBase

__all__ = ["PostgresWindows"]


class PostgresWindows(PostgresBase):
    """Keeping and reading the windows the processes on this schema were given."""

    async def keep_window(self, kind: str, name: str, until: float, record: str) -> None:
        """Keep ``record`` unless a later end of the same window is kept; drop ended ones."""
        now = self._clock.wall()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM windows WHERE until_at <= $1", now)
            await conn.execute(
                "INSERT INTO windows (kind, name, until_at, record) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (kind, name) DO UPDATE SET until_at = EXCLUDED.until_at, "
                "record = EXCLUDED.record WHERE EXCLUDED.until_at > windows.until_at",
                kind,
                name,
                until,
                record,
            )

    async def live_windows(self) -> list[str]:
        """The records of the windows kept that have not ended."""
        rows = await self._pool.fetch(
            "SELECT record FROM windows WHERE until_at > $1 ORDER BY kind, name",
            self._clock.wall(),
        )
        return [row[0] for row in rows]
