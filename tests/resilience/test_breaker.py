"""The circuit breaker state machine, driven by a FakeClock."""

from __future__ import annotations

import dataclasses

import pytest

from imagerouter.clock import FakeClock
from imagerouter.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t=1000 s."""
    return FakeClock(1000.0)


@pytest.fixture
def events() -> list[BreakerTransition]:
    """Collects the transitions a breaker reports."""
    return []


#: The mechanics below are shown on a count window that trips on 5 failures in a row (or 50%
#: of at least 5 of the last 20 calls): the defaults up to 0.1, small enough to read.
COUNT_5 = {"window": "count", "minimum_calls": 5, "consecutive_failures": 5}


def make(
    clock: FakeClock, events: list[BreakerTransition] | None = None, **overrides: object
) -> CircuitBreaker:
    """A breaker named "p" on :data:`COUNT_5` plus ``overrides``."""
    config = BreakerConfig(**{**COUNT_5, **overrides})  # type: ignore[arg-type]
    return CircuitBreaker("p", config, clock, events.append if events is not None else None)


def trip(breaker: CircuitBreaker, failures: int = 5) -> None:
    """Record enough failures to trip a :data:`COUNT_5` breaker."""
    for _ in range(failures):
        breaker.record_failure(0.1)


def open_then_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Trip, then wait out the cooldown."""
    trip(breaker)
    clock.advance(breaker.open_until - clock.now())  # type: ignore[operator]
    assert breaker.state is HALF_OPEN


# ----------------------------------------------------------------- config


def test_config_defaults() -> None:
    """The defaults the simulator chose (README "How the defaults were chosen")."""
    c = BreakerConfig()
    assert (c.window, c.window_size, c.window_seconds, c.minimum_calls) == ("time", 20, 30.0, 20)
    assert (c.failure_rate_threshold, c.consecutive_failures) == (0.5, 20)
    assert (c.slow_call_s, c.slow_call_rate_threshold) == (None, 1.0)
    assert (c.open_base_s, c.open_multiplier, c.open_max_s, c.half_open_probes) == (
        5.0,
        2.0,
        120.0,
        2,
    )


@pytest.mark.parametrize(
    "field",
    [
        {"window": "sliding"},
        {"window_size": 0},
        {"minimum_calls": 0},
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": 1.5},
        {"consecutive_failures": -1},
        {"slow_call_s": 0.0},
        {"open_multiplier": 0.5},
        {"open_max_s": 1.0},
        {"half_open_probes": 0},
    ],
)
def test_config_rejects_bad_values(field: dict[str, object]) -> None:
    """A config value out of range is a ValueError naming the field."""
    with pytest.raises(ValueError, match=next(iter(field))):
        BreakerConfig(**field)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    """A config cannot be changed after it is made."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        BreakerConfig().window_size = 3  # type: ignore[misc]


def test_open_duration_grows_and_caps() -> None:
    """Open time is base·multiplier^(trips-1), capped at open_max_s, without overflow."""
    c = BreakerConfig(open_base_s=5.0, open_multiplier=2.0, open_max_s=120.0)
    assert [c.open_duration(n) for n in range(1, 8)] == [5, 10, 20, 40, 80, 120, 120]
    assert c.open_duration(10_000) == 120.0


# ----------------------------------------------------------------- closed → open


def test_starts_closed_and_allows(clock: FakeClock) -> None:
    """A new breaker is closed, lets calls through and reports nothing open."""
    b = make(clock)
    assert b.state is CLOSED
    assert b.allow()
    assert b.open_until is None
    assert b.next_probe_at is None
    assert b.trips == 0
    assert b.last_failure_at is None


def test_failure_rate_needs_minimum_calls(clock: FakeClock) -> None:
    """Failures below minimum_calls never trip on rate, however high the rate."""
    b = make(clock, consecutive_failures=0, minimum_calls=5)
    for _ in range(4):
        b.record_failure()
    assert b.state is CLOSED
    b.record_failure()
    assert b.state is OPEN


def test_failure_rate_trips_at_threshold(clock: FakeClock, events: list) -> None:
    """A failure rate equal to the threshold trips, with the rate in the reason."""
    b = make(clock, events, consecutive_failures=0, minimum_calls=10)
    for _ in range(5):
        b.record_success(0.1)
    for _ in range(4):
        b.record_failure(0.1)
    assert b.state is CLOSED
    b.record_failure(0.1)
    assert b.state is OPEN
    assert events[-1].reason == "failure rate 0.50 ≥ 0.50 over 10 calls"


def test_failure_rate_just_below_threshold_stays_closed(clock: FakeClock) -> None:
    """A rate a hair under the threshold (0.6 = 3/5 counted exactly) behaves as expected."""
    b = make(clock, consecutive_failures=0, failure_rate_threshold=0.6, minimum_calls=5)
    for outcome in (False, True, False, True, False):
        (b.record_success if outcome else b.record_failure)(0.1)
    assert b.state is OPEN  # 3/5 = 0.6 ≥ 0.6, no float rounding lets it slip

    b2 = make(clock, consecutive_failures=0, failure_rate_threshold=0.61, minimum_calls=5)
    for outcome in (False, True, False, True, False):
        (b2.record_success if outcome else b2.record_failure)(0.1)
    assert b2.state is CLOSED


def test_success_reaching_minimum_calls_can_trip(clock: FakeClock) -> None:
    """The rate is checked on every call, so a success that fills minimum_calls may trip."""
    b = make(clock, consecutive_failures=0, minimum_calls=5)
    for _ in range(4):
        b.record_failure()
    b.record_success(0.1)
    assert b.state is OPEN


def test_count_window_forgets_oldest_call(clock: FakeClock) -> None:
    """A count window holds only the last window_size outcomes."""
    b = make(clock, consecutive_failures=0, window_size=4, minimum_calls=4)
    b.record_failure()
    for _ in range(3):
        b.record_success()
    assert b.snapshot()["window_failures"] == 1
    b.record_success()  # pushes the failure out
    snap = b.snapshot()
    assert (snap["window_calls"], snap["window_failures"]) == (4, 0)
    b.record_failure()
    b.record_failure()  # 2 of the last 4
    assert b.state is OPEN


def test_minimum_calls_capped_by_count_window(clock: FakeClock) -> None:
    """With minimum_calls above window_size, a full count window is enough to trip."""
    b = make(clock, consecutive_failures=0, window_size=3, minimum_calls=10)
    for _ in range(3):
        b.record_failure()
    assert b.state is OPEN


def test_consecutive_failures_trip(clock: FakeClock, events: list) -> None:
    """N failures in a row trip even when the window's rate is low."""
    b = make(clock, events, window_size=100, consecutive_failures=3, minimum_calls=100)
    for _ in range(50):
        b.record_success()
    b.record_failure()
    b.record_failure()
    b.record_success()  # breaks the run
    b.record_failure()
    b.record_failure()
    assert b.state is CLOSED
    b.record_failure()
    assert b.state is OPEN
    assert events[-1].reason == "3 consecutive failures"


def test_consecutive_failures_zero_disables(clock: FakeClock) -> None:
    """consecutive_failures=0 turns that trigger off."""
    b = make(clock, window_size=100, minimum_calls=100, consecutive_failures=0)
    for _ in range(50):
        b.record_success()
    for _ in range(40):
        b.record_failure()
    assert b.state is CLOSED


def test_slow_call_rate_trips(clock: FakeClock, events: list) -> None:
    """Calls at or over slow_call_s count toward the slow-call rate and its own threshold."""
    b = make(clock, events, slow_call_s=2.0, slow_call_rate_threshold=0.6, minimum_calls=5)
    b.record_success(1.9)
    b.record_success(1.0)
    b.record_success(2.0)
    b.record_success(3.0)
    assert b.state is CLOSED
    b.record_success(5.0)  # 3 slow of 5
    assert b.state is OPEN
    assert events[-1].reason == "slow-call rate 0.60 ≥ 0.60 over 5 calls"


def test_slow_calls_ignored_when_disabled(clock: FakeClock) -> None:
    """Without slow_call_s, latency never trips the breaker."""
    b = make(clock)
    for _ in range(50):
        b.record_success(1e6)
    assert b.state is CLOSED
    assert b.snapshot()["window_slow"] == 0


def test_slow_failures_count_as_both(clock: FakeClock) -> None:
    """A slow failure counts as a failure and as a slow call."""
    b = make(clock, consecutive_failures=0, slow_call_s=1.0, minimum_calls=10)
    b.record_failure(2.0)
    snap = b.snapshot()
    assert (snap["window_failures"], snap["window_slow"]) == (1, 1)


def test_time_window_trips_and_expires(clock: FakeClock) -> None:
    """A time window counts recent calls only: failures older than the window fall out."""
    b = make(clock, window="time", window_seconds=10.0, minimum_calls=4, consecutive_failures=0)
    for _ in range(3):
        b.record_failure()
    clock.advance(11.0)
    b.record_failure()
    snap = b.snapshot()
    assert (snap["window_calls"], snap["window_failures"]) == (1, 1)
    assert b.state is CLOSED
    for _ in range(3):
        clock.advance(1.0)
        b.record_failure()
    assert b.state is OPEN


def test_time_window_expires_bucket_by_bucket(clock: FakeClock) -> None:
    """Old per-second buckets leave the window one at a time as the clock moves."""
    b = make(clock, window="time", window_seconds=5.0, minimum_calls=100, consecutive_failures=0)
    for _ in range(5):
        b.record_success()
        clock.advance(1.0)
    assert b.snapshot()["window_calls"] == 4  # the first second has just left
    clock.advance(2.0)
    assert b.snapshot()["window_calls"] == 2
    clock.advance(100.0)
    assert b.snapshot()["window_calls"] == 0


def test_time_window_burst_in_one_second(clock: FakeClock) -> None:
    """Many calls in the same second share one bucket and all count."""
    b = make(clock, window="time", window_seconds=30.0, consecutive_failures=0)
    for _ in range(1000):
        b.record_success()
    assert b.snapshot()["window_calls"] == 1000
    for _ in range(999):
        b.record_failure()
    assert b.state is CLOSED
    b.record_failure()
    assert b.state is OPEN


def test_trip_event_content(clock: FakeClock, events: list) -> None:
    """The trip is reported once, with name, states, time, reason and open duration."""
    b = make(clock, events)
    trip(b)
    assert events == [
        BreakerTransition("p", CLOSED, OPEN, 1000.0, "failure rate 1.00 ≥ 0.50 over 5 calls", 5.0)
    ]
    assert b.last_failure_at == 1000.0


def test_transition_event_is_frozen_and_slotted(clock: FakeClock, events: list) -> None:
    """Transition events are immutable and slotted."""
    b = make(clock, events)
    trip(b)
    event = events[0]
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.reason = "x"  # type: ignore[misc]


# ----------------------------------------------------------------- open


def test_open_rejects_until_cooldown(clock: FakeClock) -> None:
    """While open, allow() is False and open_until / next_probe_at give the cooldown's end."""
    b = make(clock)
    trip(b)
    assert b.open_until == 1005.0
    assert b.next_probe_at == 1005.0
    clock.advance(4.999)
    assert not b.allow()
    assert b.state is OPEN


def test_outcomes_while_open_are_dropped(clock: FakeClock) -> None:
    """Late outcomes of calls admitted before the trip change nothing while open."""
    b = make(clock)
    trip(b)
    for _ in range(10):
        b.record_success(0.1)
        b.record_ignored()
    b.record_failure()
    assert b.state is OPEN
    assert b.trips == 1
    assert b.last_failure_at == 1000.0


def test_cooldown_elapsed_goes_half_open_lazily(clock: FakeClock, events: list) -> None:
    """After the cooldown, reading state turns open into half-open and reports it."""
    b = make(clock, events)
    trip(b)
    clock.advance(5.0)
    assert b.state is HALF_OPEN
    assert events[-1] == BreakerTransition("p", OPEN, HALF_OPEN, 1005.0, "cooldown elapsed")
    assert b.open_until is None
    assert b.next_probe_at == 1005.0


# ----------------------------------------------------------------- half-open


def test_half_open_permits_are_limited(clock: FakeClock) -> None:
    """With 2 probes, the third allow() is False until a probe answers."""
    b = make(clock)
    open_then_half_open(b, clock)
    assert b.allow()
    assert b.allow()
    assert not b.allow()
    assert b.next_probe_at is None
    assert b.snapshot()["probes_out"] == 2


def test_ignored_releases_a_permit(clock: FakeClock) -> None:
    """record_ignored() in half-open gives the permit back without an outcome."""
    b = make(clock)
    open_then_half_open(b, clock)
    assert b.allow()
    assert b.allow()
    b.record_ignored()
    assert b.state is HALF_OPEN
    assert b.allow()
    assert not b.allow()


def test_all_probes_succeed_closes(clock: FakeClock, events: list) -> None:
    """Every probe succeeding closes the breaker with a fresh window."""
    b = make(clock, events)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success(0.1)
    assert b.state is HALF_OPEN
    b.record_success(0.1)
    assert b.state is CLOSED
    assert events[-1] == BreakerTransition("p", HALF_OPEN, CLOSED, 1005.0, "probes succeeded")
    snap = b.snapshot()
    assert (snap["window_calls"], snap["consecutive_failures"]) == (0, 0)


def test_one_probe_failure_reopens_with_grown_duration(clock: FakeClock, events: list) -> None:
    """A failed probe re-opens at once, for base·multiplier."""
    b = make(clock, events)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success(0.1)
    b.record_failure(0.1)
    assert b.state is OPEN
    assert events[-1] == BreakerTransition("p", HALF_OPEN, OPEN, 1005.0, "probe failed", 10.0)
    assert b.open_until == 1015.0
    assert b.trips == 2


def test_outcome_without_outstanding_probe_is_ignored(clock: FakeClock) -> None:
    """In half-open, an outcome with no probe out (a late call) decides nothing."""
    b = make(clock)
    open_then_half_open(b, clock)
    b.record_failure()
    b.record_success()
    b.record_success()
    assert b.state is HALF_OPEN


def test_slow_probes_reopen(clock: FakeClock, events: list) -> None:
    """Probes that succeed but are all slow re-open the breaker (slow-call rate over probes)."""
    b = make(clock, events, slow_call_s=1.0)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success(2.0)
    b.record_success(3.0)
    assert b.state is OPEN
    assert events[-1].reason == "probes slow: 2 of 2"


def test_lost_probes_time_out(clock: FakeClock, events: list) -> None:
    """Probes never answered for half_open_max_s re-open the breaker instead of sticking."""
    b = make(clock, events, half_open_max_s=60.0)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    clock.advance(59.0)
    assert b.state is HALF_OPEN
    clock.advance(1.0)
    assert b.state is OPEN
    assert events[-1].reason == "probes timed out"


def test_idle_half_open_does_not_time_out(clock: FakeClock) -> None:
    """Half-open with no probe out waits for traffic however long it takes."""
    b = make(clock, half_open_max_s=60.0)
    open_then_half_open(b, clock)
    clock.advance(1000.0)
    assert b.state is HALF_OPEN
    assert b.allow()


# ----------------------------------------------------------------- trips: growth, cap, reset


def test_open_duration_grows_on_repeated_trips_and_caps(clock: FakeClock, events: list) -> None:
    """Trips in a row open for 5, 10, 20, 40, 80, 120, 120 s."""
    b = make(clock, events)
    trip(b)
    for _ in range(6):
        clock.advance(b.open_until - clock.now())  # type: ignore[operator]
        assert b.allow()
        b.record_failure()
    assert [e.open_for_s for e in events if e.to_state is OPEN] == [5, 10, 20, 40, 80, 120, 120]
    assert b.trips == 7
    assert b.total_trips == 7


def test_quick_retrip_after_close_keeps_growing(clock: FakeClock, events: list) -> None:
    """Tripping again soon after closing continues the streak."""
    b = make(clock, events)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success()
    b.record_success()
    clock.advance(10.0)
    trip(b)
    assert events[-1].open_for_s == 10.0
    assert b.trips == 2


def test_streak_resets_after_staying_closed(clock: FakeClock, events: list) -> None:
    """Closed for trip_reset_s (default open_max_s), the next trip opens for open_base_s."""
    b = make(clock, events)
    open_then_half_open(b, clock)
    b.allow()
    b.record_failure()  # trips == 2, open 10 s
    clock.advance(10.0)
    b.allow()
    b.allow()
    b.record_success()
    b.record_success()
    assert b.state is CLOSED
    assert b.trips == 2
    clock.advance(120.0)
    assert b.trips == 0
    trip(b)
    assert events[-1].open_for_s == 5.0
    assert b.trips == 1
    assert b.total_trips == 3


def test_custom_trip_reset(clock: FakeClock, events: list) -> None:
    """trip_reset_s overrides how long the breaker must stay closed to forget the streak."""
    b = make(clock, events, trip_reset_s=30.0)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success()
    b.record_success()
    clock.advance(29.0)
    assert b.trips == 1
    clock.advance(1.0)
    assert b.trips == 0


# ----------------------------------------------------------------- force_probe, reset


def test_force_probe_from_open(clock: FakeClock, events: list) -> None:
    """force_probe() on an open breaker goes half-open and reserves one permit."""
    b = make(clock, events)
    trip(b)
    clock.advance(1.0)
    assert b.force_probe()
    assert b.state is HALF_OPEN
    assert events[-1] == BreakerTransition("p", OPEN, HALF_OPEN, 1001.0, "forced probe")
    assert b.snapshot()["probes_out"] == 1
    assert b.allow()  # the second permit
    assert not b.allow()


def test_force_probe_false_unless_open(clock: FakeClock) -> None:
    """force_probe() is False when closed or already half-open."""
    b = make(clock)
    assert not b.force_probe()
    open_then_half_open(b, clock)
    assert not b.force_probe()


def test_forced_probe_failure_reopens_grown(clock: FakeClock) -> None:
    """A forced probe that fails re-opens with the grown duration."""
    b = make(clock)
    trip(b)
    assert b.force_probe()
    b.record_failure()
    assert b.state is OPEN
    assert b.open_until == 1010.0


def test_forced_probes_come_at_most_once_per_base_open_time(clock: FakeClock) -> None:
    """Panic mode lets one probe through per open_base_s, not one per caller: in a total
    outage every job would otherwise probe and the breaker would hold nothing back."""
    b = make(clock, open_base_s=5.0, open_max_s=60.0)
    trip(b)
    assert b.force_probe()
    b.record_failure()  # the probe failed: open again (for 10 s now)
    clock.advance(4.9)
    assert not b.force_probe()
    assert b.state is OPEN
    clock.advance(0.1)
    assert b.force_probe()


def test_reset_closes_and_forgets(clock: FakeClock, events: list) -> None:
    """reset() closes an open breaker and forgets its streak."""
    b = make(clock, events)
    trip(b)
    b.reset()
    assert b.state is CLOSED
    assert b.trips == 0
    assert events[-1].reason == "reset"
    trip(b)
    assert events[-1].open_for_s == 5.0


# ----------------------------------------------------------------- snapshot


def test_snapshot_is_plain(clock: FakeClock) -> None:
    """snapshot() holds only plain values and names the documented keys."""
    b = make(clock)
    b.record_success(0.1)
    b.record_failure(0.1)
    snap = b.snapshot()
    assert snap == {
        "name": "p",
        "state": "closed",
        "state_since": 1000.0,
        "open_until": None,
        "last_failure_at": 1000.0,
        "trips": 0,
        "total_trips": 0,
        "consecutive_failures": 1,
        "window_calls": 2,
        "window_failures": 1,
        "window_slow": 0,
        "failure_rate": 0.5,
        "probes_left": 0,
        "probes_out": 0,
        "probe_successes": 0,
    }


def test_ignored_in_closed_changes_nothing(clock: FakeClock) -> None:
    """record_ignored() while closed neither fills the window nor breaks a failure run."""
    b = make(clock, consecutive_failures=2, minimum_calls=10)
    b.record_failure()
    b.record_ignored()
    assert b.snapshot()["window_calls"] == 1
    b.record_failure()
    assert b.state is OPEN


def test_no_callback_is_fine(clock: FakeClock) -> None:
    """Without on_transition the breaker still works through a whole cycle."""
    b = make(clock)
    open_then_half_open(b, clock)
    b.allow()
    b.allow()
    b.record_success()
    b.record_success()
    assert b.state is CLOSED
