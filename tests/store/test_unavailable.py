"""A lost or full database is a StoreUnavailable / StorageFull: a 503 with Retry-After and a
machine code, never a 500; anything else keeps its own error."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from imagerouter.jobs.errors import StorageFull, StoreUnavailable
from imagerouter.jobs.postgres.connection import _GuardedAcquire, unavailable
from imagerouter.jobs.sqlite.thread import storage_full
from imagerouter.server.errors import api_error


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
    ],
)
def test_a_lost_postgresql_is_store_unavailable(error: Exception) -> None:
    found = unavailable(error)
    assert type(found) is StoreUnavailable
    assert found.code == "store_unavailable"


def test_a_full_postgresql_disk_isstorage_full() -> None:
    assert isinstance(unavailable(asyncpg.exceptions.DiskFullError("no space")), StorageFull)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.InterfaceError("another operation is in progress"),
        ValueError("a bug"),
    ],
)
def test_other_errors_are_not_unavailability(error: Exception) -> None:
    assert unavailable(error) is None


def test_a_full_sqlite_disk_isstorage_full_and_other_errors_stay() -> None:
    full = storage_full(sqlite3.OperationalError("database or disk is full"))
    assert isinstance(full, StorageFull)
    assert full.code == "storage_full"
    locked = sqlite3.OperationalError("database is locked")
    assert storage_full(locked) is locked


@pytest.mark.parametrize(
    ("error", "code", "retry_after"),
    [
        (StoreUnavailable("cut"), "store_unavailable", "1"),
        (StorageFull("full"), "storage_full", "5"),
    ],
)
def test_the_answer_is_a_503_with_retry_after(error: StoreUnavailable, code: str, retry_after: str):
    answer = api_error(error)
    assert (answer.status, answer.code, answer.headers["Retry-After"]) == (503, code, retry_after)
    assert answer.body()["error"]["retry_after_s"] == error.retry_after_s


class _Inner:
    """An acquire context whose release fails as a killed session's does."""

    def __init__(self, release_error: Exception) -> None:
        self.release_error = release_error

    async def __aenter__(self) -> str:
        return "conn"

    async def __aexit__(self, *exc: object) -> None:
        raise self.release_error


async def test_a_session_killed_during_release_does_not_fail_a_finished_block() -> None:
    killed = asyncpg.exceptions.InternalClientError("cannot switch to state 15")
    async with _GuardedAcquire(_Inner(killed)) as conn:
        assert conn == "conn"  # the block ends normally: no error although release failed
    with pytest.raises(StoreUnavailable):
        async with _GuardedAcquire(_Inner(killed)):
            raise asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-query")
    with pytest.raises(RuntimeError, match="a bug"):
        async with _GuardedAcquire(_Inner(RuntimeError("a bug"))):
            pass
