"""Shared fixtures: a mock farm on loopback, and a router pointed at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from mockproviders import Farm, load_scenario

# Proxies must never see loopback traffic.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    """A farm with the default (fault-free) scenario, on a free loopback port."""
    async with Farm(scenario=load_scenario("default")) as running:
        yield running
