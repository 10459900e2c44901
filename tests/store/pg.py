"""The real PostgreSQL for tests: is it there, and a schema of a test's own (dropped after)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid

import asyncpg
import pytest

#: The PostgreSQL the tests use; only loopback by default.
PG_URL = os.environ.get("IMAGEROUTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _problem(url: str) -> str | None:
    """None if PostgreSQL at ``url`` answers, else why not."""

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result(timeout=10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_postgres(url: str = PG_URL) -> str:
    """``url`` if PostgreSQL answers there; else skip, or fail when CI=true."""
    problem = _problem(url)
    if problem is not None:
        message = f"PostgreSQL is not reachable at {url} ({problem})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires it", pytrace=False)
        pytest.skip(f"{message}; start it or set IMAGEROUTER_TEST_PG_URL")
    return url


def new_schema(prefix: str = "irtest") -> str:
    """A schema name no other run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``?schema=`` set (the store creates the schema when it migrates)."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
