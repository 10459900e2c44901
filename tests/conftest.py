"""Shared fixtures: a mock farm on loopback, and a fresh SQLite job store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagerouter.jobs.sqlite import SQLiteJobStore
from mockproviders import Farm, load_scenario

# Proxies must never see loopback traffic.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    """A farm with the default (fault-free) scenario, on a free loopback port."""
    async with Farm(scenario=load_scenario("default")) as running:
        yield running


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteJobStore]:
    """A fresh SQLite job store in the test's temporary directory, started and closed."""
    async with SQLiteJobStore(tmp_path / "imagerouter.db") as opened:
        yield opened
