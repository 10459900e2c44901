"""Windows kept on SQLite (:class:`~imagerouter.jobs.store.WindowStore`): one row a window,
the latest end kept."""

from __future__ import annotations

import sqlite3

from imagerouter.jobs.sqlite.base import SQLiteBase

__all__ = ["SQLiteWindows"]


class SQLiteWindows(SQLiteBase):
    """Keeping and reading the windows a process was given."""

    async def keep_window(self, kind: str, name: str, until: float, record: str) -> None:
        """Keep ``record`` unless a later end of the same window is kept; drop ended ones."""
        now = self._clock.wall()

        def keep(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM windows WHERE until <= ?", (now,))
            conn.execute(
                "INSERT INTO windows (kind, name, until, record) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, name) DO UPDATE SET until = excluded.until, "
                "record = excluded.record WHERE excluded.until > windows.until",
                (kind, name, until, record),
            )

        await self.thread.run(keep)

    async def live_windows(self) -> list[str]:
        """The records of the windows kept that have not ended."""
        now = self._clock.wall()
        rows = await self.thread.run(
            lambda conn: conn.execute(
                "SELECT record FROM windows WHERE until > ? ORDER BY kind, name", (now,)
            ).fetchall()
        )
        return [row[0] for row in rows]
