"""The SQLite job store: every aggregate's mixin over :class:`~.base.SQLiteBase`."""

from __future__ import annotations

from imagerouter.jobs.sqlite.accounts import SQLiteAccounts
from imagerouter.jobs.sqlite.events import SQLiteEventLog
from imagerouter.jobs.sqlite.idempotency import SQLiteIdempotency
from imagerouter.jobs.sqlite.leases import SQLiteLeases
from imagerouter.jobs.sqlite.peers import SQLitePeers
from imagerouter.jobs.sqlite.queue import SQLiteJobQueue
from imagerouter.jobs.sqlite.webhooks import SQLiteWebhooks
from imagerouter.jobs.sqlite.windows import SQLiteWindows

__all__ = ["SQLiteJobStore"]


class SQLiteJobStore(
    SQLiteAccounts,
    SQLiteJobQueue,
    SQLiteLeases,
    SQLiteEventLog,
    SQLiteIdempotency,
    SQLiteWebhooks,
    SQLitePeers,
    SQLiteWindows,
):
    """:class:`~imagerouter.jobs.store.JobStore` on one SQLite file (WAL).

    Args:
        path: the database file.
        synchronous: ``NORMAL`` survives a killed process; ``FULL`` also a power cut.
        batch_max: most operations sharing one commit.
        revocation_poll_s: how often revocations by other processes on the same file are
            looked for, while someone listens (:meth:`subscribe_revocations`).
        clock: where "now" comes from (its ``wall()``).
    """
