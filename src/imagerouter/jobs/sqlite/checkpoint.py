"""Checkpoints of the write-ahead log, on a thread of their own.

SQLite's automatic checkpoint runs inside a ``COMMIT`` once the WAL passes 1,000 pages: the
committing thread then copies pages back into the database and ``fdatasync``\\ s both files,
and every submit of the next batch waits behind those milliseconds. Here a second connection
runs a ``PASSIVE`` checkpoint every ``period_s`` while there were commits, which never blocks
the writer (it copies what is committed and stops at what is not). The writer keeps a far
larger automatic checkpoint as a backstop, should this thread ever fall behind.

Durability does not change: ``synchronous`` applies to this connection's checkpoints as it
would to the writer's, and a commit is durable (in ``NORMAL``'s documented sense) once its
``COMMIT`` returns, checkpointed or not.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from imagerouter.eventloop import helper_thread

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

log = logging.getLogger(__name__)

#: The writer's own automatic checkpoint (pages of WAL), a backstop only: 40 MiB of 4 KiB pages.
BACKSTOP_PAGES = 10_000


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``period_s`` while ``commits()`` grows.

    Args:
        path: the database file (it exists: the writer opened it first).
        synchronous: the writer's ``synchronous`` pragma, for this connection's checkpoints.
        commits: how many transactions the writer has committed so far.
        period_s: the pause between checkpoints.
    """

    def __init__(
        self,
        path: Path,
        synchronous: str,
        commits: Callable[[], int],
        *,
        period_s: float = 0.25,
    ) -> None:
        self._path, self._synchronous, self._commits = path, synchronous, commits
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the checkpoint thread."""
        self._thread = threading.Thread(
            target=self._main, name=f"sqlite-checkpoint:{self._path.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (its connection closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _main(self) -> None:
        helper_thread()
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.exception("no checkpoint connection: the writer checkpoints alone")
            return
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            seen = self._commits()
            while not self._stop.wait(self._period_s):
                now = self._commits()
                if now == seen:
                    continue
                seen = now
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next round tries again
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            conn.close()
