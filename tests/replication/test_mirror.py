"""The pure rules, without Redis: adopting remote state never notifies local listeners,
cooldowns only lengthen, breakers are last-writer-wins, and the prober goes first."""

from __future__ import annotations

import logging

import pytest

from imagerouter.clock import FakeClock
from imagerouter.replication import Mirror
from imagerouter.replication.records import BreakerRecord, CooldownRecord, decode, encode
from imagerouter.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)
from imagerouter.resilience.cooldowns import Cooldowns, CooldownStarted
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.replication.helpers import FAST

CONFIG = BreakerConfig(consecutive_failures=2, open_base_s=5.0, half_open_probes=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mirrors(farm: Farm, clock: FakeClock) -> tuple[Mirror, Mirror]:
    """Two replicas' mirrors on one fake clock (so their wall clocks agree exactly)."""
    a = farm_router(farm, FAST, clock=clock)
    b = farm_router(farm, FAST, clock=clock)
    return (
        Mirror(a, "a", probe_head_start_s=1.0, probe_lease_s=10.0),
        Mirror(b, "b", probe_head_start_s=1.0, probe_lease_s=10.0),
    )


def trip(mirror: Mirror, name: str = "fal") -> BreakerRecord:
    """Fail ``name`` on ``mirror``'s router until its breaker opens; the open's record."""
    records: list[BreakerRecord] = []
    mirror.router.transitions.add(lambda t: records.append(mirror.transitioned(t)))
    breaker = mirror.router.instances[name].breaker
    while breaker.state is not BreakerState.OPEN:
        assert breaker.allow()
        breaker.record_failure()
    return records[-1]


def test_apply_remote_changes_state_without_calling_the_listener(clock: FakeClock) -> None:
    """apply_remote changes the breaker's state but never calls on_transition."""
    heard: list[BreakerTransition] = []
    breaker = CircuitBreaker("fal", CONFIG, clock, heard.append)
    opened = breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 3, trips=2)
    assert opened is not None
    assert (opened.from_state, opened.to_state) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert breaker.open_until == clock.now() + 3
    assert breaker.trips == 2
    assert breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 1) is None
    assert breaker.open_until == clock.now() + 1  # an authoritative open replaces the end
    assert breaker.apply_remote(BreakerState.CLOSED) is not None
    assert breaker.state is BreakerState.CLOSED
    assert breaker.apply_remote(BreakerState.CLOSED) is None
    assert heard == []


def test_a_hold_never_shortens_and_defers_to_probes_in_flight(clock: FakeClock) -> None:
    """A hold keeps the later open end and leaves a breaker whose own probe is out alone."""
    breaker = CircuitBreaker("fal", CONFIG, clock)
    breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 8)
    breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 2, hold=True)
    assert breaker.open_until == clock.now() + 8
    clock.advance(8)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 5, hold=True)
    assert breaker.state is BreakerState.OPEN
    clock.advance(5)
    assert breaker.allow()  # our own probe is out now
    hold = breaker.apply_remote(BreakerState.OPEN, open_until=clock.now() + 5, hold=True)
    assert hold is None
    assert breaker.state is BreakerState.HALF_OPEN


def test_cooldowns_tell_listeners_of_starts_but_not_of_applied_ones(clock: FakeClock) -> None:
    """on_start hears of started or lengthened cooldowns, never of applied ones."""
    heard: list[CooldownStarted] = []
    cooldowns = Cooldowns(clock)
    cooldowns.on_start.add(heard.append)
    cooldowns.start("fal", 5.0)
    cooldowns.start("fal", 2.0)  # shorter: nothing changes, nobody told
    cooldowns.start_learned("openai")
    assert [(e.key, e.until - clock.now(), e.reason) for e in heard] == [
        ("fal", 5.0, "retry-after"),
        ("openai", 1.0, "429 without Retry-After"),
    ]
    assert cooldowns.apply("fal", clock.now() + 9.0, "remote")
    assert not cooldowns.apply("fal", clock.now() + 4.0)
    assert not cooldowns.apply("wavespeed", clock.now() - 1.0)  # already over
    assert cooldowns.remaining("fal") == 9.0
    assert len(heard) == 2


def test_records_round_trip_through_json() -> None:
    """Records decode to themselves; unknown kinds and broken bodies decode to None."""
    records = [
        CooldownRecord("fal", 1_800_000_000.123456, "retry-after", "a"),
        BreakerRecord("fal", "open", 1_800_000_000.5, "a", "3 failures", 1_800_000_005.5, 2),
    ]
    for record in records:
        assert decode(encode(record)) == record
    assert decode('{"kind": "weather", "name": "x"}') is None
    assert decode("not json") is None


def test_a_newer_kind_is_ignored_quietly_and_a_broken_record_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """During a rolling upgrade a newer replica's records of a kind this version lacks come
    for every change: each is ignored at debug level, while one that does not parse (any JSON
    that is not a record object) is ignored with a warning, and nothing raises."""
    with caplog.at_level(logging.DEBUG, logger="imagerouter.replication.records"):
        assert decode('{"kind": "weather", "name": "x"}') is None
        assert decode('{"kind": ["odd"], "name": "x"}') is None
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="imagerouter.replication.records"):
        for broken in ("not json", "5", "[1, 2]", '{"name": "x"}', '{"kind": "cooldown"}'):
            assert decode(broken) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 5


def test_a_remote_open_gives_the_tripping_replica_a_head_start(
    mirrors: tuple[Mirror, Mirror], clock: FakeClock
) -> None:
    """B adopts A's open plus a head start, so A, which tripped, probes first."""
    a, b = mirrors
    record = trip(a)
    assert record.origin == "a"
    assert record.state == "open"
    assert not a.receive(record)
    assert b.receive(record)
    fal_a, fal_b = a.router.instances["fal"].breaker, b.router.instances["fal"].breaker
    assert fal_b.state is BreakerState.OPEN
    assert fal_a.open_until is not None
    assert fal_b.open_until == pytest.approx(fal_a.open_until + 1.0)
    assert not b.receive(record)  # a duplicate changes nothing
    clock.advance(fal_a.open_until - clock.now())
    assert fal_a.state is BreakerState.HALF_OPEN
    assert fal_b.state is BreakerState.OPEN


def test_the_probers_half_open_holds_the_others_and_its_verdict_reaches_them(
    mirrors: tuple[Mirror, Mirror], clock: FakeClock
) -> None:
    """While A probes, B holds off; A's close closes B."""
    a, b = mirrors
    records: list[BreakerRecord] = []
    a.router.transitions.add(lambda t: records.append(a.transitioned(t)))
    b.receive(trip(a))
    fal_a, fal_b = a.router.instances["fal"].breaker, b.router.instances["fal"].breaker
    clock.advance(5.0)
    assert fal_a.allow()  # A's probe goes out: A is half-open
    b.receive(records[-1])
    assert records[-1].state == "half_open"
    clock.advance(2.0)  # past B's own open time and head start, inside the lease
    assert fal_b.state is BreakerState.OPEN
    fal_a.record_success()
    assert records[-1].state == "closed"
    assert b.receive(records[-1])
    assert fal_b.state is BreakerState.CLOSED


def test_last_writer_wins_and_stale_opens_do_not_reopen_a_healthy_breaker(
    mirrors: tuple[Mirror, Mirror], clock: FakeClock
) -> None:
    """Older breaker records lose, and a long-over open does not reopen a closed breaker."""
    a, b = mirrors
    opened = trip(a)
    clock.advance(1.0)
    closed = BreakerRecord("fal", "closed", opened.at + 1.0, "a", "probes succeeded")
    assert b.receive(closed)  # adopted (B's breaker was closed already)
    assert not b.receive(opened)  # older than the close B has seen
    assert b.router.instances["fal"].breaker.state is BreakerState.CLOSED
    stale = BreakerRecord("wavespeed", "open", opened.at - 60, "a", "old", opened.at - 55, 1)
    assert not b.receive(stale)
    assert b.router.instances["wavespeed"].breaker.state is BreakerState.CLOSED


def test_reconcile_adopts_newer_state_and_returns_what_of_ours_is_newer(
    mirrors: tuple[Mirror, Mirror], clock: FakeClock
) -> None:
    """Resync adopts what Redis has newer and returns what of ours is newer than Redis's."""
    a, b = mirrors
    wall = clock.wall()
    a_open = trip(a)
    a.router.instances["fal"].cooldowns.start("wavespeed", 4.0)
    stored = [
        CooldownRecord("wavespeed", wall + 2.0, "retry-after", "b"),  # older than ours
        CooldownRecord("openai", wall + 7.0, "retry-after", "b"),  # new to us
    ]
    republish = a.reconcile(stored)
    assert a.router.instances["openai"].cooldowns.remaining("openai") == pytest.approx(7.0)
    kinds = sorted((r.kind, r.name) for r in republish)
    assert kinds == [("breaker", "fal"), ("cooldown", "wavespeed")]  # not openai: theirs
    assert next(r for r in republish if r.kind == "breaker") == a_open
    assert a.reconcile([*stored, a_open, *republish]) == []  # nothing newer left to send
    assert b.reconcile([a_open]) == []
    assert b.router.instances["fal"].breaker.state is BreakerState.OPEN
