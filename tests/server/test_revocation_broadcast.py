"""A key revoked on one replica (or with ``imagerouter keys revoke``) is refused by the other
replicas long before their auth cache would expire: PostgreSQL tells them by ``NOTIFY``,
SQLite by the revoked-key count each one watches. The replica tests run two apps on one store
with ``auth_cache_s`` an hour, so only the broadcast can explain the refusal; the last one
checks that a lookup racing the news cannot put a stale record back in the cache."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from imagerouter.auth import Authenticator, AuthError, mint_key
from imagerouter.cli import main
from imagerouter.jobs.postgres import PostgresJobStore
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.server.keys import store_key
from tests.helpers.api import Api, ApiFactory
from tests.polling import eventually
from tests.store.pg import PG_URL, drop_schema, new_schema, require_postgres, with_schema

ADMIN = "adm_broadcast_test_0123456789"
#: Far longer than any test: a refusal cannot be the cached record expiring.
CACHE_S = 3600.0


async def _replicas(make_api: ApiFactory, store_url: str | None) -> tuple[Api, Api]:
    options = {"auth_cache_s": CACHE_S, "admin_key": ADMIN}
    if store_url:
        options["store"] = store_url
    return await make_api(**options), await make_api(**options)


async def _status(api: Api, token: str) -> int:
    return (await api.client.get("/v1/jobs", headers=api.auth(token))).status


async def _cached_on(b: Api, token: str) -> None:
    for _ in range(2):  # the second answer comes from the cache
        assert await _status(b, token) == 200


async def _refused_on(b: Api, token: str) -> None:
    await eventually(
        lambda: _refused(b, token), timeout_s=10, what="the other replica to refuse the key"
    )
    answer = await b.client.get("/v1/jobs", headers=b.auth(token))
    assert "revoked" in (await answer.json())["error"]["message"]


async def _refused(b: Api, token: str) -> bool:
    return await _status(b, token) == 401


def _key_id(token: str) -> str:
    return "key_" + token.split("_")[1]


async def test_admin_revocation_reaches_the_other_replica(
    make_api: ApiFactory, store_url: str | None
) -> None:
    """Revoked through replica A's admin API: A refuses the next request, B (which had the
    key cached) soon after, and a key not revoked still works on both."""
    a, b = await _replicas(make_api, store_url)
    token, other = await a.key(), await a.key()
    await _cached_on(b, token)
    await _cached_on(b, other)
    answer = await a.client.delete(
        f"/v1/admin/keys/{_key_id(token)}", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status == 200, await answer.text()
    assert await _status(a, token) == 401
    await _refused_on(b, token)
    assert await _status(a, other) == 200
    assert await _status(b, other) == 200


async def test_cli_revocation_reaches_every_replica(
    make_api: ApiFactory, store_url: str | None, tmp_path: Path
) -> None:
    """``imagerouter keys revoke`` (another process writing the store) is refused by both
    replicas, each of which had the key cached."""
    a, b = await _replicas(make_api, store_url)
    token = await a.key()
    await _cached_on(a, token)
    await _cached_on(b, token)
    args = ["keys", "revoke", _key_id(token), "--data-dir", str(tmp_path / "data")]
    env = {"IMAGEROUTER_SERVER_STORE": store_url} if store_url else {}
    # its own event loop (asyncio.run), on a thread: as a separate process would
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    assert result.exit_code == 0, result.output
    await _refused_on(a, token)
    await _refused_on(b, token)


async def test_a_lost_listener_forgets_every_cached_key(make_api: ApiFactory) -> None:
    """PostgreSQL: a revocation made while B's LISTEN connection is cut sends B nothing; B
    forgets every cached key when it reconnects, so it refuses the key all the same."""
    base = require_postgres()
    schema = new_schema()
    try:
        a, b = await _replicas(make_api, with_schema(base, schema))
        token = await a.key()
        await _cached_on(b, token)
        store = b.app[store_key]
        assert isinstance(store, PostgresJobStore)
        pid = store.feed.listener_pid
        assert pid is not None
        conn = await asyncpg.connect(PG_URL)
        try:  # cut B's listener and revoke in one statement, without any NOTIFY
            await conn.execute(
                f'WITH gone AS (SELECT pg_terminate_backend($1, 5000) AS ok) UPDATE "{schema}"'
                ".api_keys SET revoked_at = $2 WHERE id = $3 AND (SELECT ok FROM gone)",
                pid,
                time.time(),
                _key_id(token),
            )
        finally:
            await conn.close()
        await _refused_on(b, token)
        assert store.feed.reconnects >= 1
    finally:
        await a.client.close()
        await b.client.close()
        await drop_schema(base, schema)


async def test_a_lookup_in_flight_does_not_cache_a_record_told_stale(tmp_path: Path) -> None:
    """A store read that began before the news of a revocation arrived (the store's thread is
    held so that it cannot finish first) answers that request, but is not cached: the next
    request reads the store and is refused, not served from an hour-long cache."""
    async with SQLiteJobStore(tmp_path / "imagerouter.db") as store:
        account = await store.create_account("acme")
        minted = mint_key(account.id, "ci", time.time())
        await store.create_api_key(minted.record)
        auth = Authenticator(store, cache_s=CACHE_S)
        bearer = f"Bearer {minted.token}"
        gate = threading.Event()
        held = asyncio.create_task(store.thread.run(lambda _conn: gate.wait(10)))
        lookup = asyncio.create_task(auth.authenticate(bearer))
        for _ in range(3):  # let the lookup queue its read behind the held thread
            await asyncio.sleep(0)
        auth.forget_all()  # the news of a revocation, while that read is in flight
        gate.set()
        await held
        assert (await lookup).key_id == minted.record.id  # read before the revocation
        assert await store.revoke_api_key(minted.record.id)
        with pytest.raises(AuthError, match="revoked"):
            await auth.authenticate(bearer)
