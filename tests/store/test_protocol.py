"""Both stores implement every method of the JobStore Protocol (the union of the protocols by
aggregate), with its signature."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from imagerouter.jobs.postgres import PostgresJobStore
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.store import JobStore

#: JobStore and every protocol it joins.
PROTOCOLS = [cls for cls in JobStore.__mro__ if Protocol in cls.__bases__]
METHODS = sorted(
    {
        name
        for protocol in PROTOCOLS
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    }
)


@pytest.mark.parametrize("store", [SQLiteJobStore, PostgresJobStore])
def test_every_protocol_method_is_implemented_alike(store: type) -> None:
    """Each Protocol method exists on the store, async where the Protocol's is, with the same
    parameters."""
    for name in METHODS:
        wanted, found = getattr(JobStore, name), getattr(store, name, None)
        assert found is not None, f"{store.__name__} lacks {name}"
        assert inspect.iscoroutinefunction(found) == inspect.iscoroutinefunction(wanted), name
        assert list(inspect.signature(found).parameters) == list(
            inspect.signature(wanted).parameters
        ), name
