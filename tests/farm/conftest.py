"""Fixtures for the mock provider farm tests: a running farm, an HTTP session, and a tiny
client per provider API that speaks plain HTTP (the official SDKs get their own tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from imagerouter.clock import FakeClock
from mockproviders import Farm

from .wire import Wire


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    """A farm with no faults, on the real clock."""
    async with Farm() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
async def fake_farm(clock: FakeClock) -> AsyncIterator[Farm]:
    """A farm with no faults whose engine, buckets, windows and jobs read ``clock``."""
    async with Farm(clock=clock) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client session."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def wire(session: aiohttp.ClientSession, farm: Farm) -> Wire:
    """Raw calls to the real-clock farm."""
    return Wire(session, farm)


@pytest.fixture
def fake_wire(session: aiohttp.ClientSession, fake_farm: Farm) -> Wire:
    """Raw calls to the fake-clock farm."""
    return Wire(session, fake_farm)
