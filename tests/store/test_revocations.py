"""Key revocations reach every store instance on the same database
(:meth:`~imagerouter.jobs.store.AccountStore.subscribe_revocations`): PostgreSQL by ``NOTIFY``
(the key's id), SQLite by counting revoked keys (None: some key was revoked)."""

from __future__ import annotations

import time

import asyncpg
import pytest

from imagerouter.auth import mint_key
from imagerouter.jobs import JobStore
from imagerouter.jobs.postgres import PostgresJobStore
from tests.polling import eventually
from tests.store.conftest import StoreFactory
from tests.store.pg import PG_URL


async def _key(store: JobStore) -> str:
    account = await store.create_account("acme")
    minted = mint_key(account.id, "ci", time.time())
    await store.create_api_key(minted.record)
    return minted.record.id


async def test_a_revocation_by_another_instance_is_told(make_store: StoreFactory) -> None:
    """A listener on store A hears of a key revoked through store B (another process on the
    same database); one unsubscribed hears nothing more; a revoke that changes nothing tells
    nothing on PostgreSQL."""
    watcher, revoker = await make_store(), await make_store()
    first, second = await _key(revoker), await _key(revoker)
    early: list[str | None] = []
    late: list[str | None] = []
    unsubscribe = watcher.subscribe_revocations(early.append)
    # SQLite's first count tells None (a revocation before it must not be missed): let it pass
    await eventually(lambda: make_store.backend == "postgres" or early, what="the first count")
    early.clear()
    assert await revoker.revoke_api_key(first)
    told = first if make_store.backend == "postgres" else None
    await eventually(lambda: told in early, what=f"hearing of {first}")
    unsubscribe()
    heard = list(early)
    watcher.subscribe_revocations(late.append)
    assert not await revoker.revoke_api_key(first)  # already revoked: no news
    assert await revoker.revoke_api_key(second)
    told = second if make_store.backend == "postgres" else None
    await eventually(lambda: told in late, what=f"hearing of {second}")
    assert early == heard
    if make_store.backend == "postgres":
        assert late == [second]


async def test_postgres_tells_none_after_losing_its_listener(make_store: StoreFactory) -> None:
    """A revocation made while store A's LISTEN connection is cut sends no notification A
    can get: once A reconnects it tells its listeners None (forget every key)."""
    if make_store.backend != "postgres":
        pytest.skip("SQLite has no connection to lose: it counts revoked keys")
    watcher, revoker = await make_store(), await make_store()
    assert isinstance(watcher, PostgresJobStore)
    key_id = await _key(revoker)
    heard: list[str | None] = []
    watcher.subscribe_revocations(heard.append)
    pid = watcher.feed.listener_pid
    assert pid is not None
    reconnects = watcher.feed.reconnects
    conn = await asyncpg.connect(PG_URL)
    try:  # cut the listener and revoke in one statement, with no NOTIFY at all
        await conn.execute(
            f'WITH gone AS (SELECT pg_terminate_backend($1, 5000) AS ok) UPDATE "{watcher.schema}"'
            ".api_keys SET revoked_at = $2 WHERE id = $3 AND (SELECT ok FROM gone)",
            pid,
            time.time(),
            key_id,
        )
    finally:
        await conn.close()
    await eventually(lambda: None in heard, what="None after the reconnect")
    assert watcher.feed.reconnects > reconnects
    assert watcher.feed.listener_pid not in (None, pid)
