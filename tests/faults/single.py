"""One ``imagerouter serve`` on SQLite (in a data directory the test chooses) beside a farm
process, for the fault tests that need no fleet; and reading its database from the test."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from imagerouter.auth import mint_key
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.webhooks import new_secret
from tests.replicas.fleet import (
    Proc,
    _get_json,
    farm_proc,
    replica_proc,
    start_processes,
    write_config,
    write_scenario,
)

__all__ = ["make_key", "reader", "single_server"]


async def make_key(db: Path, credits: int, *, webhook_secret: bool = False) -> tuple[str, str]:
    """A new account with ``credits`` and an API key in the SQLite database ``db`` (and a
    webhook signing secret if asked); (token, account id)."""
    async with SQLiteJobStore(db) as store:
        account = await store.create_account("load")
        await store.grant_credits(account.id, credits, "test")
        minted = mint_key(account.id, "test", time.time())
        await store.create_api_key(minted.record)
        if webhook_secret:
            await store.add_webhook_secret(account.id, new_secret(), 0.0)
    return minted.token, account.id


def reader(db: Path):
    """``fetch(sql)`` on the SQLite database ``db`` (a connection per query, in a thread)."""

    async def fetch(sql: str) -> Sequence[Sequence[Any]]:
        def read() -> list[Any]:
            conn = sqlite3.connect(db, timeout=10)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    return fetch


@contextlib.asynccontextmanager
async def single_server(
    tmp_path: Path,
    data_dir: Path,
    *,
    generation_ms: int = 300,
    server: dict[str, Any] | None = None,
) -> AsyncIterator[Proc]:
    """A farm (every provider answering after ``generation_ms``) and one server on SQLite in
    ``data_dir`` (``server``: more ``[server]`` settings); both stopped on exit."""
    scenario = {name: {"generation_ms": generation_ms} for name in ("fal", "wavespeed", "openai")}
    farm = farm_proc(tmp_path, write_scenario(tmp_path / "scenario.toml", scenario))
    start_processes([farm])
    node: Proc | None = None
    try:
        config = write_config(
            tmp_path / "imagerouter.toml",
            _get_json(f"{farm.url}/_farm/providers"),
            store=None,
            state=None,
            prefix="faults",
            server=server,
        )
        node = replica_proc(tmp_path, config, 0)
        node.command[node.command.index("--data-dir") + 1] = str(data_dir)
        start_processes([node])
        yield node
    finally:
        if node is not None:
            node.stop()
        farm.stop()
