"""The job store on PostgreSQL (asyncpg), shared by several router replicas.

Same contract as :mod:`imagerouter.jobs.sqlite`; what is different, and why:

* **Event ids in commit order.** Every transaction that writes events takes their ids last,
  from a one-row counter (``UPDATE event_clock SET last_id = last_id + n``), and holds that
  row lock until it commits. Ids are therefore dense and commit in id order: whoever sees
  event *n* has already seen every event below *n*, on any replica, so ``events_since(after)``
  is a safe ``Last-Event-ID`` resume point. (A ``bigserial`` is not: a transaction can take
  id 10, another 11, and 11 commit first.) Only the short tail of each transaction, the
  event inserts and the commit, runs under that lock.
* **Group commit.** Writes from concurrent requests share transactions, up to
  ``batch_max`` each, a few at once: plain submits go as one pipelined ``executemany`` of a
  one-statement submit (debit, job, ledger entry); finishes, cancels, releases and grants run
  one after another in a shared transaction. An op's own refusal (a short wallet, a finished
  job) is raised before it writes, so it costs the batch nothing; any other error rolls the
  batch back and its ops run again one by one. The events of the whole batch are written by
  one statement at the end (:data:`~.engine.WRITE_EVENTS`).
* **No deadlocks by construction.** A batch runs its ops by account, and within an account
  first those that lock the account row (as their first statement: refunds, cancels,
  releases, grants) and then completions, which lock only their job's row; so batches take
  account rows in one order and a job's row only within its account's turn. Multi-row
  operations (claim, lease renewal, the expiry sweep, delivery claims) never wait on a row
  (``FOR UPDATE SKIP LOCKED``), and the event counter is every transaction's last lock. A
  deadlock or serialization failure reported anyway is retried.
* **Workers claim with** ``FOR UPDATE SKIP LOCKED`` **and leases**, exactly like SQLite's
  guarded writes: a final state is written only by the lease holder, once, with its refund
  and its webhook delivery in the same transaction.
* **Events reach every replica.** Each committing transaction sends ``NOTIFY`` with its id
  range and, when they fit in the payload, its events; each store keeps one dedicated
  ``LISTEN`` connection and hands its ``subscribe`` listeners every event in id order, each
  exactly once: from the notification when it follows the last event published, otherwise
  (a gap, a long batch, a reconnect, or every ``poll_interval_s`` as a backstop) read from
  the events table after the last one published. So SSE streams, ``wait_final`` and idle
  workers on replica A wake for jobs run on replica B.
* **Revocations reach every replica.** ``revoke_api_key`` sends ``NOTIFY`` with the key's id
  in its own statement; the same ``LISTEN`` connection hands it to ``subscribe_revocations``
  listeners (the servers' auth caches), and after a reconnect tells them to forget every key.
* **Schema** comes from the versioned files of :mod:`imagerouter.jobs.migrations`, applied
  on :meth:`PostgresJobStore.start` (unless ``migrate=False``) under an advisory lock.

The modules: :mod:`~.connection` (URLs, connection set-up), :mod:`~.engine` (group commit
and event writing), :mod:`~.feed` (LISTEN/NOTIFY), :mod:`~.base` (the store's state and
lifecycle), and a mixin of :class:`~imagerouter.jobs.postgres.store.PostgresJobStore` per
aggregate of :mod:`imagerouter.jobs.store`: :mod:`~.accounts`, :mod:`~.queue` (the client's
side of the job queue), :mod:`~.leases` (the worker's side), :mod:`~.events`,
:mod:`~.idempotency` and :mod:`~.webhooks`.

The URL is a libpq-style ``postgresql://user@host:port/db``; ``?schema=NAME`` puts every
table in that schema (created if missing), and ``?pool_min=``/``?pool_max=`` size the pool.
"""

from typing import TYPE_CHECKING, Any

from imagerouter.extras import require
from imagerouter.jobs.postgres.connection import is_postgres_url, parse_url, redact_url

if TYPE_CHECKING:
    from imagerouter.jobs.postgres.store import PostgresJobStore

__all__ = ["PostgresJobStore", "is_postgres_url", "parse_url", "redact_url"]


def __getattr__(name: str) -> Any:
    """``PostgresJobStore`` is imported (with asyncpg) when asked for, after checking the
    ``postgres`` extra every time (a find_spec): the URL helpers above need no extra."""
    if name == "PostgresJobStore":
        require("postgres", "a postgresql:// job store")
        from imagerouter.jobs.postgres.store import PostgresJobStore

        return PostgresJobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
