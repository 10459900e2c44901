"""The embedded job store: SQLite in WAL mode, every query on one dedicated thread.

Each public method builds a small synchronous function of the connection and hands it to
:class:`~imagerouter.jobs.sqlite.thread.SQLiteThread`, which runs many of them per commit. Every
status change is guarded in SQL (``WHERE status IN ('queued', 'processing') AND lease_owner =
?``), so a final state is written once whatever races between workers, sweepers and cancels.

One module per aggregate of :mod:`imagerouter.jobs.store`, each a mixin of
:class:`~imagerouter.jobs.sqlite.store.SQLiteJobStore` over :mod:`~.base` (the thread, the
clock, the listeners):

* :mod:`~.accounts`: accounts, API keys, the ledger;
* :mod:`~.queue` and :mod:`~.leases`: the job queue, the client's side and the worker's;
* :mod:`~.events`: the event log;
* :mod:`~.idempotency`: idempotency keys;
* :mod:`~.webhooks`: webhook endpoints, secrets and deliveries;
* :mod:`~.thread` (the connection thread with group commit) and :mod:`~.schema`.
"""

from imagerouter.jobs.sqlite.store import SQLiteJobStore

__all__ = ["SQLiteJobStore"]
