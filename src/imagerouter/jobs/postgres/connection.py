"""Reaching PostgreSQL: the store's URL (its own query parameters, a redacted form for logs),
how every connection is set up, and :func:`run_steps`, which runs a shared rule of
:mod:`imagerouter.jobs.rules` on an asyncpg connection."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from imagerouter.jobs.rows import dumps
from imagerouter.jobs.sql import Steps, numbered

if TYPE_CHECKING:  # the URL helpers work without the postgres extra (imagerouter db reads them)
    import asyncpg

__all__ = [
    "connect_kwargs",
    "init_connection",
    "is_postgres_url",
    "parse_url",
    "redact_url",
    "run_steps",
]

T = TypeVar("T")

#: Query parameters of the store's URL that are the store's, not libpq's.
OWN_PARAMS = ("schema", "pool_min", "pool_max")


def is_postgres_url(url: str | None) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the DSN asyncpg gets and this store's own query parameters
    (``schema``, ``pool_min``, ``pool_max``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in OWN_PARAMS}
    rest = [(k, v) for k, v in query if k not in OWN_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(rest))), own


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def connect_kwargs(schema: str) -> dict[str, Any]:
    """asyncpg connection options of every pooled and listening connection: the schema's
    tables first on the search path."""
    return {
        "server_settings": {"search_path": schema, "application_name": "imagerouter"},
        "timeout": 10,
    }


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up a pooled connection: ``jsonb`` as Python values, written as the stores' JSON."""
    await conn.set_type_codec(
        "jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


async def run_steps(conn: asyncpg.Connection, steps: Steps[T]) -> T:
    """Run a rule's :mod:`~imagerouter.jobs.sql` steps on ``conn`` (``:name`` parameters
    numbered for asyncpg); its result."""
    answer: Any = None
    try:
        while True:
            query = steps.send(answer)
            sql, names = numbered(query.sql)
            args = [query.params[name] for name in names]
            if query.want == "value":
                answer = await conn.fetchval(sql, *args)
            elif query.want == "row":
                answer = await conn.fetchrow(sql, *args)
            else:
                await conn.execute(sql, *args)
                answer = None
    except StopIteration as done:
        return done.value
