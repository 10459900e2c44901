"""The pace a key is given by its 429s: spaced starts, slow start, decrease once an episode,
forgotten after a quiet spell. Driven by a FakeClock."""

from __future__ import annotations

import pytest

from imagerouter.clock import FakeClock
from imagerouter.resilience.pace import PaceConfig, RatePace


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t=1000 s."""
    return FakeClock(1000.0)


def starts_in(pace: RatePace, clock: FakeClock, seconds: float, step: float = 0.01) -> int:
    """How many calls the pace lets start over ``seconds``, asking every ``step``."""
    started = 0
    for _ in range(round(seconds / step)):
        started += pace.try_take(clock.now())
        clock.advance(step)
    return started


def test_first_pace_is_one_call_per_retry_after(clock: FakeClock) -> None:
    """A key that needs 0.5 s for its next call is paced at 2 calls a second, evenly spaced:
    no burst at the start either."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=0.5)
    assert pace.rate_per_s == 2.0
    assert pace.try_take(clock.now())
    assert not pace.try_take(clock.now())
    assert pace.time_until(clock.now()) == pytest.approx(0.5)
    clock.advance(0.5)
    assert pace.try_take(clock.now())
    assert starts_in(pace, clock, 10.25) == 20  # at 1.0, 1.5, … 10.5


def test_without_retry_after_the_first_pace_is_the_configured_one(clock: FakeClock) -> None:
    """No Retry-After to go by: ``initial_per_s``; the bounds hold for any Retry-After."""
    config = PaceConfig(initial_per_s=3.0, min_per_s=0.5, max_per_s=50.0)
    assert RatePace(clock, config, None).rate_per_s == 3.0
    assert RatePace(clock, config, 60.0).rate_per_s == 0.5
    assert RatePace(clock, config, 0.001).rate_per_s == 50.0


def test_successes_grow_the_pace_fast_until_the_first_decrease_then_slowly(
    clock: FakeClock,
) -> None:
    """Slow start multiplies by 1.25 a success; after a 429 of a call sent at the new pace it
    is cut by 0.75 and grows by 1 % a success."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=1.0)
    for _ in range(4):
        pace.succeeded()
    assert pace.rate_per_s == pytest.approx(1.25**4)
    clock.advance(1.0)
    pace.rate_limited(sent_at=clock.now() - 0.1)
    assert pace.rate_per_s == pytest.approx(1.25**4 * 0.75)
    pace.succeeded()
    assert pace.rate_per_s == pytest.approx(1.25**4 * 0.75 * 1.01)
    assert pace.snapshot()["slow_start"] is False


def test_429s_of_calls_sent_before_the_last_decrease_do_not_cut_it_again(
    clock: FakeClock,
) -> None:
    """Twenty calls in flight all answered 429 are one episode: one cut, not twenty."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=0.1)
    clock.advance(2.0)
    sent = clock.now() - 0.5
    for _ in range(20):
        pace.rate_limited(sent_at=sent)
        clock.advance(0.01)
    assert pace.rate_per_s == pytest.approx(10.0 * 0.75)
    pace.rate_limited(sent_at=clock.now())
    assert pace.rate_per_s == pytest.approx(10.0 * 0.75 * 0.75)


def test_pace_never_falls_below_its_floor(clock: FakeClock) -> None:
    """Cut after cut, the pace stops at ``min_per_s``."""
    pace = RatePace(clock, PaceConfig(min_per_s=0.5), first_wait_s=1.0)
    for _ in range(50):
        clock.advance(1.0)
        pace.rate_limited(sent_at=clock.now())
    assert pace.rate_per_s == 0.5


def test_a_key_quiet_for_forget_s_is_no_longer_paced(clock: FakeClock) -> None:
    """``expired`` turns true ``forget_s`` after the last 429, and a new 429 restarts it."""
    pace = RatePace(clock, PaceConfig(forget_s=30.0), first_wait_s=1.0)
    clock.advance(29.0)
    assert not pace.expired(clock.now())
    pace.rate_limited(sent_at=clock.now() - 5.0)
    clock.advance(29.0)
    assert not pace.expired(clock.now())
    clock.advance(1.0)
    assert pace.expired(clock.now())


def test_after_idle_the_next_start_is_spaced_from_now_not_from_the_past(
    clock: FakeClock,
) -> None:
    """An idle key does not bank starts: after a minute of nothing, one call, then the next
    one interval later."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=0.25)
    assert pace.try_take(clock.now())
    clock.advance(60.0)
    assert pace.try_take(clock.now())
    assert not pace.try_take(clock.now())
    clock.advance(0.25)
    assert pace.try_take(clock.now())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_per_s", 0.0),
        ("initial_per_s", 0.1),
        ("max_per_s", 0.5),
        ("slow_start", 0.9),
        ("increase", 0.99),
        ("decrease", 1.0),
        ("decrease", 0.0),
        ("forget_s", 0.0),
    ],
)
def test_config_out_of_range_names_the_field(field: str, value: float) -> None:
    """A meaningless pace setting is refused, naming the field."""
    with pytest.raises(ValueError, match=f"PaceConfig.{field} "):
        PaceConfig(**{field: value})


def test_a_busy_key_starts_at_the_rate_it_took_calls_at(clock: FakeClock) -> None:
    """A key that took 180 calls a second before its first 429 (Retry-After: 1) is paced at
    180/s, not at one call a second: pacing it at one per Retry-After would send its traffic
    elsewhere until slow start caught up."""
    assert RatePace(clock, PaceConfig(), first_wait_s=1.0, recent_per_s=180.0).rate_per_s == 180.0
    assert RatePace(clock, PaceConfig(), first_wait_s=0.1, recent_per_s=3.0).rate_per_s == 10.0


def test_in_a_storm_cuts_stop_at_one_call_per_retry_after(clock: FakeClock) -> None:
    """The first cut of an episode is the usual quarter whatever the window; once the key
    took no call since the last cut (a storm), the pace stops at one call per the key's own
    Retry-After instead of falling to ``min_per_s``, so it still probes once a window."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=0.5)
    assert pace.rate_per_s == 2.0
    pace.rate_limited(sent_at=clock.now(), retry_after_s=1.0)
    assert pace.rate_per_s == pytest.approx(1.5)
    for _ in range(30):
        clock.advance(1.0)
        pace.rate_limited(sent_at=clock.now(), retry_after_s=1.0)
    assert pace.rate_per_s == pytest.approx(1.0)
    clock.advance(1.0)
    pace.rate_limited(sent_at=clock.now(), retry_after_s=0.01)
    assert pace.rate_per_s == pytest.approx(1.0), "a short window never speeds the pace up"
    clock.advance(1.0)
    pace.rate_limited(sent_at=clock.now())
    assert pace.rate_per_s == pytest.approx(0.75), "without a window a storm cuts as usual"


def test_a_pace_a_little_too_fast_is_cut_below_its_window(clock: FakeClock) -> None:
    """Cuts with calls taken between them are the usual quarter even below one call per
    Retry-After: the floor is a storm's, not a limit's."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=0.5)
    for _ in range(3):
        clock.advance(1.0)
        pace.rate_limited(sent_at=clock.now(), retry_after_s=1.0)
        pace.succeeded()
    assert pace.rate_per_s == pytest.approx(2.0 * (0.75 * 1.01) ** 3)
    assert pace.rate_per_s < 1.0


def test_a_storm_is_two_429s_with_no_call_taken_between(clock: FakeClock) -> None:
    """The 429 that made the pace and a cut with no call taken between them are a storm
    (``after_refusals``: the router then forgets the pace at the next call taken); a call
    taken, one cut, then a call taken is the usual 1 % growth."""
    pace = RatePace(clock, PaceConfig(), first_wait_s=1.0)
    assert not pace.after_refusals
    pace.succeeded()
    clock.advance(1.0)
    pace.rate_limited(sent_at=clock.now())
    assert not pace.after_refusals
    pace.succeeded()
    assert pace.rate_per_s == pytest.approx(1.25 * 0.75 * 1.01)
    assert pace.snapshot()["slow_start"] is False
    storm = RatePace(clock, PaceConfig(), first_wait_s=1.0)
    clock.advance(1.0)
    storm.rate_limited(sent_at=clock.now())
    assert storm.after_refusals
    assert storm.try_take(clock.now())
    assert storm.last_start == clock.now()
