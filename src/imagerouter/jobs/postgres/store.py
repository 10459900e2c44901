"""The PostgreSQL job store: every aggregate's mixin over :class:`~.base.PostgresBase`."""

from __future__ import annotations

from imagerouter.jobs.postgres.accounts import PostgresAccounts
from imagerouter.jobs.postgres.events import PostgresEventLog
from imagerouter.jobs.postgres.idempotency import PostgresIdempotency
from imagerouter.jobs.postgres.leases import PostgresLeases
from imagerouter.jobs.postgres.peers import PostgresPeers
from imagerouter.jobs.postgres.queue import PostgresJobQueue
from imagerouter.jobs.postgres.webhooks import PostgresWebhooks
from imagerouter.jobs.postgres.windows import PostgresWindows

__all__ = ["PostgresJobStore"]


class PostgresJobStore(
    PostgresAccounts,
    PostgresJobQueue,
    PostgresLeases,
    PostgresEventLog,
    PostgresIdempotency,
    PostgresWebhooks,
    PostgresPeers,
    PostgresWindows,
):
    """:class:`~imagerouter.jobs.store.JobStore` on PostgreSQL (see the package doc).

    Args:
        url: ``postgresql://…`` (with optional ``schema``, ``pool_min``, ``pool_max``).
        schema: the schema of every table (default: the URL's, else ``public``).
        pool_min, pool_max: connection pool size (plus one listener connection).
        batch_max: most job writes sharing one transaction.
        parallel: most write transactions of this store running at once.
        poll_interval_s: how often new events are looked for without a notification.
        migrate: apply pending migrations on :meth:`start`.
        clock: where "now" comes from (its ``wall()``).
    """
