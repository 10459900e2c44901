"""``bench_store``'s lives on a real SQLite store: each run's checks hold. On an account
without a webhook URL the check wants no delivery recorded (the difference between that life
and the handoff's is the webhook's cost to the store, so it must carry none of it), with one
every job's webhook recorded once."""

from __future__ import annotations

import asyncio

import pytest

from loadtests.bench.bench_store import one_run


@pytest.mark.parametrize(
    ("handoff", "webhook"), [(False, True), (True, True), (True, False)], ids=str
)
def test_a_life_is_exact(handoff: bool, webhook: bool) -> None:
    run = asyncio.run(one_run(None, rounds=3, batch=8, handoff=handoff, webhook=webhook))
    assert run["exact"] is True
