"""One SQLite connection on one dedicated thread, with group commit.

Coroutines hand the thread small synchronous functions of the connection. The thread takes
every function waiting in its queue (up to ``batch_max``), runs each inside its own SAVEPOINT
within a single transaction, commits once, and then resolves all their futures with one
``call_soon_threadsafe``. A function that raises rolls back only its own savepoint. So the event
loop never blocks on SQLite, and under load many submits share one commit (and one fsync).
Ops queued in one turn of the event loop are handed to the thread together, and the WAL is
checkpointed by a thread of its own (:mod:`~imagerouter.jobs.sqlite.checkpoint`), not inside
a commit.

Operations that come in numbers (plain submits, reads by id, completions) can go further with
:meth:`SQLiteThread.run_many`: the thread hands every item of a batch queued for the same
*runner* to one call of it (in one savepoint), so the runner can write them with a few
multi-row statements instead of a few statements each. A runner answers each item on its own
(a short wallet refuses one submit, not the batch); if it raises, its savepoint is rolled back
and its items run again one at a time.

Group commit waits a little when the store is busy: when the last transaction held more than
one function, the thread waits up to ``gather_s`` (0.2 ms) for the loop's next hand-over before
it begins, so that one commit (its WAL pages, its thread wake-ups) carries two turns of the loop
rather than one. Work that follows a transaction of one function (nearly all of it at low
load) never waits.

What a function writes that others listen for (job events) it hands to :meth:`SQLiteThread.emit`
on the thread; once the transaction commits, the batch's items all go to ``on_commit`` in one
call on the loop, before any waiting coroutine resumes. A batch of submits publishes its events
once, not once a submit, and a listener still sees an event before its writer returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from imagerouter.eventloop import helper_thread
from imagerouter.jobs.errors import StorageFull
from imagerouter.jobs.sqlite.checkpoint import BACKSTOP_PAGES, Checkpointer
from imagerouter.private import FILE_MODE, private_dir, private_file, tighten

__all__ = ["SQLiteThread", "storage_full"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: One item's answer from a runner: its value, or the error that refused it (nothing written).
Answer = tuple[Any, BaseException | None]
#: A runner of :meth:`SQLiteThread.run_many`: the connection and a batch's items, in queue
#: order, to one :data:`Answer` per item, in the same order.
Runner = Callable[[sqlite3.Connection, list[Any]], list[Answer]]
#: Marks a queued function of the connection, run alone (not a runner's item).
_ALONE: Any = object()
#: The step of the busy store's wait for more work (see ``SQLiteThread._await_more``).
_GATHER_STEP_S = 0.00005
Op = tuple[Callable[..., Any], Any, asyncio.Future[Any]]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class SQLiteThread:
    """Runs functions of one SQLite connection on a dedicated thread, batching commits.

    Args:
        path: the database file (its directory is created 0700 when missing). The file and
            its ``-wal`` and ``-shm`` companions hold secrets, so they are created 0600 and
            tightened to it when found looser.
        synchronous: SQLite's ``synchronous`` pragma. ``NORMAL`` (with WAL) survives a killed
            process; ``FULL`` also survives power loss, at the cost of an fsync per commit.
        batch_max: most functions sharing one transaction.
        busy_timeout_ms: how long to wait for another process's write lock (the CLI).
        on_commit: called on the loop with what a committed batch's functions handed to
            :meth:`emit`, in order (nothing for a batch rolled back).
        gather_s: the longest wait for more work before a transaction, when the last one
            held more than one function (0: never wait).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        batch_max: int = 256,
        busy_timeout_ms: int = 10_000,
        on_commit: Callable[[list[Any]], None] | None = None,
        gather_s: float = 0.0002,
    ) -> None:
        self.path = Path(path)
        self._on_commit = on_commit
        self._gather_s = gather_s
        #: What the running batch's functions emitted (the thread's alone).
        self._emitted: list[Any] = []
        self._synchronous = synchronous
        self._batch_max = batch_max
        self._busy_timeout_ms = busy_timeout_ms
        self._queue: queue.SimpleQueue[list[Op] | None] = queue.SimpleQueue()
        #: Ops queued on the loop since its last hand-over to the thread.
        self._pending: list[Op] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Transactions committed and functions run, for the benchmark and tests.
        self.commits = 0
        self.ops = 0

    @property
    def native_id(self) -> int | None:
        """The writer thread's id as the operating system knows it (None before start), so
        that a benchmark can read its CPU time in ``/proc``."""
        return None if self._thread is None else self._thread.native_id

    async def start(self, init: Callable[[sqlite3.Connection], Any]) -> None:
        """Open the connection on a new thread and run ``init`` (the schema) there."""
        if not self.path.parent.is_dir():
            private_dir(self.path.parent)
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(init, ready), name=f"sqlite:{self.path.name}", daemon=True
        )
        self._thread.start()
        await ready

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the next transaction and return what it returned."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("the SQLite thread is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._enqueue((fn, _ALONE, future))
        return await future

    async def run_many(self, runner: Runner, item: Any) -> Any:
        """Hand ``item`` to ``runner`` together with every other item for it in the same
        batch (see the module doc); the value ``runner`` answered for this item, or its error.
        ``runner`` must refuse an item only before writing anything for it."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("the SQLite thread is not running")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue((runner, item, future))
        return await future

    def emit(self, items: list[Any]) -> None:
        """On the thread, from a function: hand ``items`` to ``on_commit`` once the running
        transaction commits (dropped if the function's savepoint or the batch rolls back)."""
        self._emitted.extend(items)

    def _enqueue(self, op: Op) -> None:
        # Ops queued in one turn of the loop go to the thread together, at the end of it:
        # one wake-up of the thread (a system call) per turn rather than per op.
        if not self._pending:
            assert self._loop is not None
            self._loop.call_soon(self._hand_over)
        self._pending.append(op)

    def _hand_over(self) -> None:
        ops, self._pending = self._pending, []
        if ops:
            self._queue.put(ops)

    async def aclose(self) -> None:
        """Run what is queued, close the connection and join the thread."""
        if self._thread is None:
            return
        self._hand_over()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # --- the thread ----------------------------------------------------------------------------

    def _main(self, init: Callable[[sqlite3.Connection], Any], ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        helper_thread()
        try:
            conn = self._connect()
            init(conn)
        except BaseException as exc:  # report any start-up failure to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        checkpointer = Checkpointer(self.path, self._synchronous, lambda: self.commits)
        checkpointer.start()
        try:
            self._serve(conn)
        finally:
            checkpointer.stop()  # first: the writer's close is the last checkpoint
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        # created 0600 before SQLite opens it: SQLite gives the WAL and SHM files the
        # database's mode, and nothing is written while any of them is looser
        for path in self._files():
            tighten(path, FILE_MODE)
        private_file(self.path)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # checkpoints are the Checkpointer's; this is its backstop
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Every op runs in a savepoint, whose sub-journal keeps the pages it changes; past
        # 64 KiB SQLite spills that to a temporary file (created, written, deleted: system
        # calls and an inode a batch). In memory it costs only the memory, and the WAL keeps
        # the durability: the sub-journal only ever serves a rollback within the transaction.
        conn.execute("PRAGMA temp_store = MEMORY")
        for path in self._files():  # whatever SQLite made of them, the owner's alone
            tighten(path, FILE_MODE)
        return conn

    def _files(self) -> tuple[Path, ...]:
        return tuple(Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm"))

    def _serve(self, conn: sqlite3.Connection) -> None:
        stopping = False
        last_size = 0
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = list(first)
            if last_size > 1 and self._gather_s > 0:
                # busy: the loop's next turn is likely on its way; one commit for both
                self._await_more()
            while not stopping and len(batch) < self._batch_max:
                try:
                    ops = self._queue.get_nowait()
                except queue.Empty:
                    break
                if ops is None:
                    stopping = True
                    break
                batch.extend(ops)
            last_size = len(batch)
            for start in range(0, len(batch), self._batch_max):
                self._run_batch(conn, batch[start : start + self._batch_max])

    def _await_more(self) -> None:
        """Wait up to ``gather_s`` for the loop's next hand-over (``_serve`` then takes it).

        Short sleeps while the queue is empty, not ``SimpleQueue.get(timeout=…)``: that call
        waits for the next put however long it takes when its time runs out as it begins
        (CPython 3.11 to 3.13 then compute a negative time left, which the lock reads as no
        limit). A writer preempted there held its batch, and every caller waiting on it, until
        other work came: ``bench_store`` hung so three times in about 210 runs."""
        deadline = time.monotonic() + self._gather_s
        while self._queue.empty():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _GATHER_STEP_S))

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Op]) -> None:
        outcomes: list[Outcome] = []
        self._emitted = emitted = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._deliver([(future, None, exc) for _, _, future in batch], [])
            return
        # each runner's items, in queue order; the runner runs where its first item was queued
        groups: dict[Callable[..., Any], list[tuple[Any, asyncio.Future[Any]]]] = {}
        for fn, item, future in batch:
            if item is not _ALONE:
                groups.setdefault(fn, []).append((item, future))
        try:
            for fn, item, future in batch:
                if item is _ALONE:
                    outcomes.append(_alone(conn, fn, future, emitted))
                else:
                    entries = groups.pop(fn, None)
                    if entries is not None:
                        outcomes.extend(_together(conn, fn, entries, emitted))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # A full disk can make SQLite roll the whole transaction back mid-batch (then a
            # savepoint's ROLLBACK TO fails too): nothing of the batch was written, and every
            # op of it is told so, rather than this thread dying with their futures unset.
            full = isinstance(storage_full(exc), StorageFull)  # expected: a warning
            log.log(
                logging.WARNING if full else logging.ERROR,
                "transaction failed; %d operations rolled back: %s",
                len(batch),
                exc,
            )
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = [(future, None, exc) for _, _, future in batch]
            emitted.clear()
        else:
            self.commits += 1
        self.ops += len(batch)
        self._deliver(outcomes, emitted)

    def _deliver(self, outcomes: list[Outcome], emitted: list[Any]) -> None:
        assert self._loop is not None
        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._settle_all, outcomes, emitted)

    def _settle_all(self, outcomes: list[Outcome], emitted: list[Any]) -> None:
        # before the futures: a listener hears of a write before its writer resumes
        if emitted and self._on_commit is not None:
            try:
                self._on_commit(emitted)
            except Exception:
                log.exception("the SQLite thread's on_commit failed")
        for future, value, exc in outcomes:
            _settle(future, value, exc)


def _alone(
    conn: sqlite3.Connection,
    fn: Callable[[sqlite3.Connection], Any],
    future: asyncio.Future[Any],
    emitted: list[Any],
) -> Outcome:
    """Run ``fn`` in a savepoint of its own: its error rolls back its writes (and what it
    emitted) only."""
    conn.execute("SAVEPOINT op")
    mark = len(emitted)
    try:
        value = fn(conn)
    except BaseException as exc:  # the op's own error goes back to its caller
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        del emitted[mark:]
        return future, None, exc
    conn.execute("RELEASE op")
    return future, value, None


def _together(
    conn: sqlite3.Connection,
    runner: Runner,
    entries: list[tuple[Any, asyncio.Future[Any]]],
    emitted: list[Any],
) -> list[Outcome]:
    """Run ``runner`` on every item of ``entries`` in one savepoint; if it raises, roll that
    back and run each item alone (so one bad item fails alone)."""
    conn.execute("SAVEPOINT many")
    mark = len(emitted)
    try:
        answers = runner(conn, [item for item, _ in entries])
        if len(answers) != len(entries):
            raise RuntimeError(f"runner {runner!r} answered {len(answers)} of {len(entries)}")
    except BaseException as exc:
        conn.execute("ROLLBACK TO many")
        conn.execute("RELEASE many")
        del emitted[mark:]
        if len(entries) == 1:
            return [(entries[0][1], None, exc)]
        outcomes: list[Outcome] = []
        for entry in entries:
            outcomes.extend(_together(conn, runner, [entry], emitted))
        return outcomes
    conn.execute("RELEASE many")
    return [
        (future, value, error) for (_, future), (value, error) in zip(entries, answers, strict=True)
    ]


#: SQLite's primary result code for a full disk (``SQLITE_FULL``).
_SQLITE_FULL = 13


def storage_full(exc: BaseException) -> BaseException:
    """``exc``, or the :class:`StorageFull` it means (SQLite's "database or disk is full")."""
    if isinstance(exc, sqlite3.Error) and (
        (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
        or "database or disk is full" in str(exc)
    ):
        full = StorageFull(f"SQLite: {exc}")
        full.__cause__ = exc
        return full
    return exc


def _settle(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(storage_full(exc))
    else:
        future.set_result(value)
