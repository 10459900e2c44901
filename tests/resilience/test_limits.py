"""Token buckets, cooldowns, the retry budget and concurrency limits, driven by a FakeClock."""

from __future__ import annotations

import math

import pytest

from imagerouter.clock import FakeClock
from imagerouter.resilience.concurrency import AIMDLimit, ConcurrencyLimit, FixedLimit
from imagerouter.resilience.cooldowns import CooldownConfig, Cooldowns
from imagerouter.resilience.retry_budget import RetryBudget
from imagerouter.resilience.token_bucket import TokenBucket


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t=1000 s."""
    return FakeClock(1000.0)


# ----------------------------------------------------------------- token bucket


def test_bucket_starts_full_and_empties(clock: FakeClock) -> None:
    """A new bucket holds ``burst`` tokens and refuses the next one."""
    b = TokenBucket(1.0, 3, clock)
    assert [b.try_take() for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_rate_up_to_burst(clock: FakeClock) -> None:
    """Tokens come back at rate_per_s and never beyond burst."""
    b = TokenBucket(2.0, 4, clock)
    for _ in range(4):
        b.try_take()
    clock.advance(0.5)
    assert b.try_take()
    assert not b.try_take()
    clock.advance(100.0)
    assert b.tokens == 4.0


def test_bucket_take_n(clock: FakeClock) -> None:
    """try_take(n) takes n tokens at once or none."""
    b = TokenBucket(1.0, 5, clock)
    assert b.try_take(3)
    assert not b.try_take(3)
    assert b.tokens == 2.0


def test_bucket_time_until(clock: FakeClock) -> None:
    """time_until says when n tokens will be there: 0 now, inf above burst."""
    b = TokenBucket(2.0, 2, clock)
    assert b.time_until() == 0.0
    b.try_take(2)
    assert b.time_until() == pytest.approx(0.5)
    assert b.time_until(2) == pytest.approx(1.0)
    assert b.time_until(3) == math.inf
    clock.advance(0.5)
    assert b.time_until() == 0.0


def test_bucket_headers_remaining_zero_blocks_until_reset(clock: FakeClock) -> None:
    """remaining=0 from the provider means no token until its reset time, then normal refill."""
    b = TokenBucket(10.0, 10, clock)
    b.set_from_headers(limit=60, remaining=0, reset_s=2.0)
    assert not b.try_take()
    assert b.time_until() == pytest.approx(2.0)
    clock.advance(1.999)
    assert not b.try_take()
    clock.advance(0.001)
    assert b.try_take()
    assert not b.try_take()
    clock.advance(0.1)
    assert b.try_take()


def test_bucket_headers_remaining_lowers_tokens(clock: FakeClock) -> None:
    """A lower remaining count from the provider lowers ours; a higher one does not raise it."""
    b = TokenBucket(1.0, 10, clock)
    b.set_from_headers(limit=None, remaining=2, reset_s=None)
    assert b.tokens == 2.0
    b.set_from_headers(limit=None, remaining=50, reset_s=None)
    assert b.tokens == 2.0


def test_bucket_headers_limit_caps_burst(clock: FakeClock) -> None:
    """A provider limit below our burst lowers the capacity; above it, changes nothing."""
    b = TokenBucket(1.0, 10, clock)
    b.set_from_headers(limit=4, remaining=None, reset_s=None)
    assert b.burst == 4.0
    assert b.tokens == 4.0
    b.set_from_headers(limit=500, remaining=None, reset_s=None)
    assert b.burst == 10.0


def test_bucket_headers_missing_change_nothing(clock: FakeClock) -> None:
    """All-None headers leave the bucket as it was."""
    b = TokenBucket(1.0, 3, clock)
    b.set_from_headers(None, None, None)
    assert b.snapshot() == {"tokens": 3.0, "updated_at": 1000.0, "rate_per_s": 1.0, "burst": 3.0}


def test_bucket_rejects_bad_config(clock: FakeClock) -> None:
    """A zero rate or a burst below one token is a ValueError."""
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(0.0, 1, clock)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, 0.5, clock)


# ----------------------------------------------------------------- cooldowns


def test_cooldown_explicit(clock: FakeClock) -> None:
    """start() cools a key down for the given seconds, with its reason."""
    c = Cooldowns(clock)
    assert c.start("openai/k1", 3.0, "retry-after") == 1003.0
    assert c.active("openai/k1")
    assert c.until("openai/k1") == 1003.0
    assert c.remaining("openai/k1") == 3.0
    assert c.reason("openai/k1") == "retry-after"
    assert not c.active("openai/k2")
    assert c.until("openai/k2") is None
    assert c.remaining("openai/k2") == 0.0
    clock.advance(3.0)
    assert not c.active("openai/k1")
    assert c.until("openai/k1") is None
    assert c.reason("openai/k1") is None


def test_cooldown_never_shortens(clock: FakeClock) -> None:
    """A shorter Retry-After does not cut a running longer cooldown; a longer one extends it."""
    c = Cooldowns(clock)
    c.start("k", 10.0)
    assert c.start("k", 2.0) == 1010.0
    assert c.start("k", 20.0) == 1020.0


def test_learned_cooldown_grows_and_caps(clock: FakeClock) -> None:
    """429s without Retry-After wait 1, 2, 4, … s, capped at learned_max_s."""
    c = Cooldowns(clock)
    lengths = []
    for _ in range(8):
        lengths.append(c.start_learned("k"))
        clock.advance(c.remaining("k"))
    assert lengths == [1, 2, 4, 8, 16, 30, 30, 30]


def test_learned_cooldown_not_grown_by_in_flight_429s(clock: FakeClock) -> None:
    """A 429 arriving during the cooldown (sent before it) does not grow or extend it."""
    c = Cooldowns(clock)
    assert c.start_learned("k") == 1.0
    clock.advance(0.25)
    assert c.start_learned("k") == 0.75
    assert c.until("k") == 1001.0
    clock.advance(0.75)
    assert c.start_learned("k") == 2.0


def test_learned_cooldown_resets_after_quiet(clock: FakeClock) -> None:
    """learned_reset_s of quiet after a learned cooldown ends the episode."""
    c = Cooldowns(clock, CooldownConfig(learned_reset_s=60.0))
    for _ in range(3):
        c.start_learned("k")
        clock.advance(c.remaining("k"))
    clock.advance(59.0)
    assert c.start_learned("k") == 8.0
    clock.advance(8.0 + 60.0)
    assert c.start_learned("k") == 1.0


def test_learned_cooldown_config(clock: FakeClock) -> None:
    """Initial length, multiplier and cap come from the config."""
    c = Cooldowns(
        clock, CooldownConfig(learned_initial_s=0.5, learned_multiplier=3.0, learned_max_s=5.0)
    )
    lengths = []
    for _ in range(4):
        lengths.append(c.start_learned("k"))
        clock.advance(c.remaining("k"))
    assert lengths == [0.5, 1.5, 4.5, 5.0]


def test_learned_cooldown_reason(clock: FakeClock) -> None:
    """A learned cooldown says why it is running."""
    c = Cooldowns(clock)
    c.start_learned("k")
    assert c.reason("k") == "429 without Retry-After"


def test_cooldowns_keys_are_independent(clock: FakeClock) -> None:
    """Each key has its own cooldown and learned episode."""
    c = Cooldowns(clock)
    c.start_learned("a")
    clock.advance(1.0)
    assert c.start_learned("a") == 2.0
    assert c.start_learned("b") == 1.0


def test_cooldowns_do_not_grow_without_bound(clock: FakeClock) -> None:
    """A stream of short cooldowns on ever-new keys keeps the table bounded."""
    c = Cooldowns(clock, CooldownConfig(learned_reset_s=5.0))
    peak = 0
    for i in range(10_000):
        c.start(f"explicit-{i}", 1.0)
        c.start_learned(f"learned-{i}")
        clock.advance(0.1)
        peak = max(peak, len(c))
    assert peak < 500
    clock.advance(100.0)
    c.sweep()
    assert len(c) == 0


def test_cooldowns_snapshot_and_clear(clock: FakeClock) -> None:
    """snapshot() lists live cooldowns and episodes; clear() ends one at once."""
    c = Cooldowns(clock)
    c.start("a", 5.0, "retry-after")
    c.start_learned("b")
    clock.advance(1.0)
    snap = c.snapshot()
    assert snap["active"] == {
        "a": {"until": 1005.0, "remaining_s": 4.0, "reason": "retry-after"},
    }
    assert snap["learned"] == {"b": {"length_s": 1.0, "ends_at": 1001.0}}
    c.clear("a")
    assert not c.active("a")


# ----------------------------------------------------------------- retry budget


def test_budget_floor_without_traffic(clock: FakeClock) -> None:
    """With no first attempts, min_retries retries per window are still allowed."""
    b = RetryBudget(clock=clock)
    assert [b.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_ratio_of_first_attempts(clock: FakeClock) -> None:
    """Retries are capped at ratio × first attempts once that exceeds the floor."""
    b = RetryBudget(ratio=0.2, min_retries=3, window_s=10.0, clock=clock)
    for _ in range(100):
        b.record_first_attempt()
    granted = sum(b.try_spend() for _ in range(50))
    assert granted == 20
    assert b.snapshot()["rejected"] == 30


def test_budget_fractional_cap_rounds_down(clock: FakeClock) -> None:
    """A cap of 1.4 retries allows one retry, not two."""
    b = RetryBudget(ratio=0.2, min_retries=0, clock=clock)
    for _ in range(7):
        b.record_first_attempt()
    assert [b.try_spend(), b.try_spend()] == [True, False]


def test_budget_window_slides(clock: FakeClock) -> None:
    """First attempts and retries older than the window stop counting."""
    b = RetryBudget(ratio=0.5, min_retries=0, window_s=10.0, clock=clock)
    for _ in range(10):
        b.record_first_attempt()
    assert sum(b.try_spend() for _ in range(10)) == 5
    clock.advance(5.0)
    for _ in range(10):
        b.record_first_attempt()
    assert sum(b.try_spend() for _ in range(10)) == 5  # 20 firsts → 10, 5 already spent
    clock.advance(5.0)  # the first batch leaves the window
    assert b.available() == 0  # 10 firsts → 5, 5 spent
    clock.advance(5.0)
    assert b.snapshot()["first_attempts"] == 0
    assert b.available() == 0


def test_budget_spent_retries_expire(clock: FakeClock) -> None:
    """After a window, the floor is available again."""
    b = RetryBudget(clock=clock)
    for _ in range(3):
        assert b.try_spend()
    assert not b.try_spend()
    clock.advance(10.0)
    assert b.try_spend()


def test_budget_snapshot(clock: FakeClock) -> None:
    """snapshot() reports the window's counts and the budget's settings."""
    b = RetryBudget(clock=clock)
    for _ in range(20):
        b.record_first_attempt()
    b.try_spend()
    assert b.snapshot() == {
        "first_attempts": 20,
        "retries": 1,
        "available": 3,
        "rejected": 0,
        "ratio": 0.2,
        "min_retries": 3,
        "window_s": 10.0,
    }


def test_budget_rejects_bad_config(clock: FakeClock) -> None:
    """Negative ratio or floor, or an empty window, is a ValueError."""
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(ratio=-0.1, clock=clock)
    with pytest.raises(ValueError, match="min_retries"):
        RetryBudget(min_retries=-1, clock=clock)
    with pytest.raises(ValueError, match="window_s"):
        RetryBudget(window_s=0.0, clock=clock)


# ----------------------------------------------------------------- concurrency


def test_limits_share_one_interface() -> None:
    """Fixed, AIMD and gradient limits all satisfy the ConcurrencyLimit protocol."""
    limits: list[ConcurrencyLimit] = [FixedLimit(2), AIMDLimit()]
    for limit in limits:
        assert limit.try_acquire()
        assert limit.in_flight == 1
        limit.release(0.1, dropped=False)
        assert limit.in_flight == 0


def test_fixed_limit(clock: FakeClock) -> None:
    """A fixed limit admits max_concurrent calls and never moves."""
    f = FixedLimit(2)
    assert [f.try_acquire() for _ in range(3)] == [True, True, False]
    f.release(1.0, dropped=True)
    assert f.limit == 2
    assert f.try_acquire()


def test_release_without_acquire_raises() -> None:
    """Releasing more than was acquired is a bug and says so."""
    for limit in (FixedLimit(1), AIMDLimit()):
        with pytest.raises(RuntimeError, match="without a matching"):
            limit.release(0.1, False)


def test_aimd_admits_up_to_limit() -> None:
    """AIMD admits ``limit`` concurrent calls."""
    a = AIMDLimit(initial=3, minimum=1, maximum=10)
    assert [a.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_aimd_additive_increase_when_busy() -> None:
    """A good call adds 1 when in flight ≥ limit/2."""
    a = AIMDLimit(initial=4, minimum=1, maximum=10)
    a.try_acquire()
    a.try_acquire()
    a.release(0.1, dropped=False)  # 2 in flight ≥ 4/2
    assert a.limit == 5


def test_aimd_no_increase_when_idle() -> None:
    """A good call under light load does not raise the limit."""
    a = AIMDLimit(initial=10, minimum=1, maximum=20)
    a.try_acquire()
    a.release(0.1, dropped=False)
    assert a.limit == 10


def test_aimd_multiplicative_decrease_on_drop() -> None:
    """A dropped call multiplies the limit by backoff_ratio."""
    a = AIMDLimit(initial=20, backoff_ratio=0.9)
    a.try_acquire()
    a.release(0.1, dropped=True)
    assert a.limit == 18


def test_aimd_timeout_counts_as_drop() -> None:
    """A call slower than timeout_s decreases the limit like a drop."""
    a = AIMDLimit(initial=20, timeout_s=5.0)
    a.try_acquire()
    a.release(6.0, dropped=False)
    assert a.limit == 18


def test_aimd_respects_minimum_and_maximum() -> None:
    """The limit stays within [minimum, maximum]."""
    a = AIMDLimit(initial=3, minimum=2, maximum=4)
    for _ in range(10):
        a.try_acquire()
        a.release(0.1, dropped=True)
    assert a.limit == 2
    for _ in range(10):
        a.try_acquire()
        a.try_acquire()
        a.release(0.1, dropped=False)
        a.release(0.1, dropped=False)
    assert a.limit == 4


def test_aimd_rejects_bad_config() -> None:
    """Inconsistent bounds or a backoff ratio outside (0, 1) are ValueErrors."""
    with pytest.raises(ValueError, match="minimum"):
        AIMDLimit(initial=5, minimum=10)
    with pytest.raises(ValueError, match="backoff_ratio"):
        AIMDLimit(backoff_ratio=1.0)
