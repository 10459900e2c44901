"""Fixtures for the multi-replica tests: the real PostgreSQL and Redis (skipped when absent,
a failure under ``CI=true``), and ``make_fleet``, which starts a farm and N replicas on a
fresh schema and Redis prefix, and stops and removes them all afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from imagerouter.jobs.postgres import PostgresJobStore
from tests.helpers.redis_service import REDIS_URL, delete_prefix, require_redis
from tests.replicas.fleet import (
    Fleet,
    Proc,
    ThreadedProxy,
    _get_json,
    farm_proc,
    replica_proc,
    start_processes,
    write_config,
    write_scenario,
)
from tests.store.pg import drop_schema, new_schema, require_postgres, with_schema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def services() -> tuple[str, str]:
    """(PostgreSQL URL, Redis URL); skips when either is down, unless CI=true (then fails)."""
    pg_url = require_postgres()
    return pg_url, require_redis(REDIS_URL)


@pytest.fixture
async def make_fleet(services: tuple[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    """``await make_fleet(scenario, replicas=3, server=…, router=…, providers=…, proxy=False,
    args=…)``: a farm process with ``scenario`` (provider → fault profile) and N replicas
    sharing one config (``providers``: more settings per provider; ``args``: extra ``serve``
    flags by replica index; ``proxy``: Redis through a cuttable TCP proxy, ``fleet.proxy``)."""
    pg_url, redis_url = services
    procs: list[Proc] = []
    cleanup: list[Any] = []

    async def make(
        scenario: dict[str, dict[str, Any]],
        *,
        replicas: int = 3,
        server: dict[str, Any] | None = None,
        router: dict[str, Any] | None = None,
        providers: dict[str, dict[str, Any]] | None = None,
        proxy: bool = False,
        args: dict[int, list[str]] | None = None,
    ) -> Fleet:
        schema, prefix = new_schema("irrep"), f"irtest:{uuid.uuid4().hex[:12]}"
        store_url = with_schema(pg_url, schema)
        cleanup.append(("schema", schema))
        cleanup.append(("prefix", prefix))
        state_url, tcp = redis_url, None
        if proxy:
            target = redis.connection.parse_url(redis_url)
            tcp = ThreadedProxy(target.get("host", "127.0.0.1"), int(target.get("port", 6379)))
            tcp.start()
            cleanup.append(("proxy", tcp))
            state_url = tcp.url(int(target.get("db", 0)))
        farm = farm_proc(tmp_path, write_scenario(tmp_path / "scenario.toml", scenario))
        procs.append(farm)
        start_processes([farm])
        config = write_config(
            tmp_path / "imagerouter.toml",
            _get_json(f"{farm.url}/_farm/providers"),
            store=store_url,
            state=state_url,
            prefix=prefix,
            server=server,
            router=router,
            providers=providers,
        )
        args = args or {}
        nodes = [replica_proc(tmp_path, config, i, *args.get(i, ())) for i in range(replicas)]
        procs.extend(nodes)
        start_processes(nodes)  # they migrate the empty schema at once: the advisory lock
        store = PostgresJobStore(store_url, pool_max=4, poll_interval_s=0.2)
        await store.start()
        cleanup.append(("store", store))
        return Fleet(farm, nodes, store, config, tcp)

    try:
        yield make
    finally:
        for proc in reversed(procs):
            proc.stop()
        for kind, thing in reversed(cleanup):
            if kind == "store":
                await thing.aclose()
            elif kind == "proxy":
                thing.stop()
            elif kind == "schema":
                await drop_schema(pg_url, thing)
            elif kind == "prefix":
                delete_prefix(redis_url, thing)
