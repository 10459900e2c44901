"""Reaching PostgreSQL: the store's URL (its own query parameters, a redacted form for logs),
how every connection is set up, :class:`GuardedPool` (the pool, with a lost database raised as
:class:`~imagerouter.jobs.errors.StoreUnavailable`), and :func:`run_steps`, which runs a
shared rule of :mod:`imagerouter.jobs.rules` on an asyncpg connection."""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from imagerouter.jobs.errors import StorageFull, StoreUnavailable
from imagerouter.jobs.sql import Steps, numbered
from imagerouter.jsontext import dumps, loads
from imagerouter.private import redact_url

if TYPE_CHECKING:  # the URL helpers work without the postgres extra (imagerouter db reads them)
    import asyncpg

__all__ = [
    "GuardedPool",
    "connect_kwargs",
    "init_connection",
    "is_postgres_url",
    "parse_url",
    "redact_url",
    "run_steps",
    "unavailable",
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
        "jsonb", encoder=dumps, decoder=loads, schema="pg_catalog", format="text"
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


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The :class:`StoreUnavailable` (or :class:`StorageFull`) that ``exc`` means, or None
    when it is no sign of a lost database: a refused or reset connection, a connect timeout,
    a session killed (``pg_terminate_backend``) or cut by a shutdown or restart, a server still
    starting, too many connections, a full disk."""
    import asyncpg  # the postgres extra: only a store that runs gets here

    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        return StorageFull(f"PostgreSQL: {exc}")
    lost = (
        OSError,  # refused, reset, unreachable; TimeoutError (a connect timeout) is one too
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.PostgresConnectionError,  # class 08
        asyncpg.exceptions.OperatorInterventionError,  # 57P01-03: shut down, crashed, starting
        asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, no memory
        # a session killed while idle in the pool: the server's goodbye arrives as the next
        # query starts, and the driver finds its state machine mid-operation
        asyncpg.exceptions.InternalClientError,
    )
    if isinstance(exc, lost) or (
        isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc)
    ):
        return StoreUnavailable(f"{type(exc).__name__}: {exc}")
    return None


class _GuardedAcquire:
    """``async with pool.acquire() as conn``: a lost database, while acquiring or inside the
    block, leaves it as :class:`StoreUnavailable`; one lost while the connection is released
    after the block is no error of the block's."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aenter__(self) -> asyncpg.Connection:
        return await _guarded(self._inner.__aenter__())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        except Exception as release_error:
            # Releasing resets the connection; a session killed just then fails it. The block
            # itself (its transaction) already ended: what it did stands, and the pool drops
            # the broken connection. Only the block's own error, if any, is the answer.
            if exc is None and unavailable(release_error) is None:
                raise
        if isinstance(exc, Exception):
            _raise_if_lost(exc)


class GuardedPool:
    """The store's asyncpg pool, with every sign of a lost database (:func:`unavailable`)
    raised as :class:`StoreUnavailable`, so the API answers 503 with ``Retry-After`` rather
    than 500. The pool itself reconnects: a dead connection is dropped when released and the
    next ``acquire`` opens a new one."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def acquire(self) -> _GuardedAcquire:
        """A connection, as ``async with``."""
        return _GuardedAcquire(self.pool.acquire())

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """``Pool.fetch``."""
        return await _guarded(self.pool.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """``Pool.fetchrow``."""
        return await _guarded(self.pool.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        """``Pool.fetchval``."""
        return await _guarded(self.pool.fetchval(query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        """``Pool.execute``."""
        return await _guarded(self.pool.execute(query, *args))

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()


async def _guarded(call: Awaitable[T]) -> T:
    """``await call``, a lost database raised as :class:`StoreUnavailable`."""
    try:
        return await call
    except Exception as exc:
        _raise_if_lost(exc)
        raise


def _raise_if_lost(exc: Exception) -> None:
    lost = unavailable(exc)
    if lost is not None and lost is not exc:
        raise lost from exc
