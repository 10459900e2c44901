"""Simulated provider accounts: the farm's faults, limits and timings as the router sees them."""

from __future__ import annotations

from typing import Any

import pytest

from imagerouter.clock import FakeClock
from imagerouter.errors import (
    AuthFailed,
    ContentRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.simulate.providers import ProviderAccount, effective_profile
from imagerouter.simulate.spec import load_spec
from imagerouter.simulate.world import World

from .conftest import WriteFile


class Harness:
    """A world on a fake clock whose provider-side events are run by hand."""

    def __init__(self, path: Any) -> None:
        self.clock = FakeClock(1000.0)
        self.events: list[tuple[float, Any, Any]] = []
        self.reanswers: list[tuple[Any, Any]] = []
        self.world = World(
            load_spec(path),
            self.clock,
            lambda at, fn, obj: self.events.append((at, fn, obj)),
            lambda ticket, answer: self.reanswers.append((ticket, answer)),
        )

    def account(self, name: str) -> ProviderAccount:
        return self.world.accounts[name]

    def at(self, t: float) -> None:
        """Move the clock to 1000 + t."""
        self.clock.advance(1000.0 + t - self.clock.now())

    def run_events(self) -> None:
        for at, fn, obj in sorted(self.events, key=lambda e: e[0]):
            self.clock.advance(max(0.0, at - self.clock.now()))
            fn(obj, at)
        self.events.clear()


def world(write_toml: WriteFile, farm: str, accounts: str = "") -> Harness:
    text = f"seed = 1\n[simulation]\nmodels = {{ 'gpt-image-2' = 1 }}\n{accounts}\n{farm}"
    return Harness(write_toml("w.toml", text))


def test_token_bucket_429_carries_the_farms_retry_after_and_window(write_toml: WriteFile) -> None:
    """An empty bucket answers 429 with Retry-After rounded up to whole seconds (fal), and a
    call inside that window after the grace is counted by the farm's own counter."""
    h = world(write_toml, "[providers.fal]\nrate_limit = { rpm = 60, burst = 2 }\n")
    fal = h.account("fal")
    assert fal.call("a", 2000.0)[1] is None
    assert fal.call("b", 2000.0)[1] is None
    at, error, _ = fal.call("c", 2000.0)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 1.0
    assert at == 1000.0
    h.at(0.05)  # inside the 100 ms grace: forgiven
    fal.call("d", 2000.0)
    h.at(0.5)  # past the grace, inside the window
    fal.call("e", 2000.0)
    stats = h.world.windows["fal"].counts(fal.key)
    assert stats["retry_after_issued"] == 3
    assert stats["inside_retry_after_raw"] == 2
    assert stats["inside_retry_after"] == 1


def test_openai_429_is_exact_and_its_budget_headers_are_learned(write_toml: WriteFile) -> None:
    """OpenAI sends retry-after-ms (the exact wait) and x-ratelimit-* (parsed by the router)."""
    h = world(write_toml, "[providers.openai]\nrate_limit = { rpm = 120, burst = 1 }\n")
    openai = h.account("openai")
    _, error, budget = openai.call("a", 2000.0)
    assert error is None
    assert budget is not None
    assert budget.limit == 120
    assert budget.remaining == 0
    _, error, budget = openai.call("b", 2000.0)
    assert isinstance(error, RateLimited)
    assert error.retry_after == pytest.approx(0.5)
    assert budget is not None
    assert budget.reset_s == pytest.approx(0.5, abs=0.01)


def test_queue_api_result_is_seen_at_the_first_poll_after_generation(
    write_toml: WriteFile,
) -> None:
    """fal's result is seen at the plugin's first poll after the generation ends."""
    h = world(
        write_toml,
        "[providers.fal]\nlatency_ms = 10\ngeneration_ms = 300\n",
    )
    at, error, _ = h.account("fal").call("a", 2000.0)
    # polls after the submit (answered at +0.01): +0.25, +0.625 (×1.5) …
    assert error is None
    assert at == pytest.approx(1000.01 + 0.625)


def test_queue_api_gives_up_when_the_next_poll_would_pass_the_deadline(
    write_toml: WriteFile,
) -> None:
    """A generation longer than the attempt's deadline ends in ProviderTimeout at the last
    poll before it, as the plugin's poll loop does."""
    h = world(write_toml, "[providers.fal]\ngeneration_ms = 10000\n")
    at, error, _ = h.account("fal").call("a", 1001.0)
    assert isinstance(error, ProviderTimeout)
    assert at == pytest.approx(1000.625)  # next poll would be at +1.1875 > +1.0


def test_sync_api_answers_after_latency_and_generation_or_times_out(
    write_toml: WriteFile,
) -> None:
    """OpenAI answers after latency + generation; past the deadline it is a timeout then."""
    h = world(write_toml, "[providers.openai]\nlatency_ms = 100\ngeneration_ms = 2000\n")
    openai = h.account("openai")
    at, error, _ = openai.call("a", 2000.0)
    assert error is None
    assert at == pytest.approx(1002.1)
    at, error, _ = openai.call("b", 1001.0)
    assert isinstance(error, ProviderTimeout)
    assert at == 1001.0


def test_down_answers_503_at_once_and_a_down_phase_fails_polls_in_flight(
    write_toml: WriteFile,
) -> None:
    """``down`` is a 503 at once; a job in flight when fal goes down fails after the plugin's
    poll retries, and not before."""
    farm = """
        [providers.fal]
        generation_ms = 3000
        [[providers.fal.phases]]
        at_s = 1
        until_s = 20
        faults = { down = true }
    """
    h = world(write_toml, farm)
    fal = h.account("fal")
    at, error, _ = fal.call("in-flight", 1100.0)
    assert isinstance(error, ProviderUnavailable)
    # polls at +0.25, +0.625, +1.1875: the one at +1.1875 meets the outage; retried after
    # 0.5, 1.0 and 2.0 s (poll_initial · 2^n), all still down: fails at +4.6875
    assert at == pytest.approx(1004.6875)
    h.at(2.0)
    at, error, _ = fal.call("late", 1100.0)
    assert isinstance(error, ProviderUnavailable)
    assert at == 1002.0


def test_random_faults_map_to_the_plugins_error_classes(write_toml: WriteFile) -> None:
    """401 → AuthFailed, timeout → ProviderTimeout at the request timeout, content policy →
    ContentRejected (OpenAI refuses at once)."""
    for fault, expected in (
        ("401", AuthFailed),
        ("timeout", ProviderTimeout),
        ("content_policy", ContentRejected),
        ("reset", ProviderUnavailable),
    ):
        h = world(write_toml, f'[providers.openai]\nerror_rates = {{ "{fault}" = 1.0 }}\n')
        at, error, _ = h.account("openai").call("a", 5000.0)
        assert isinstance(error, expected), fault
        assert at == (1120.0 if fault == "timeout" else 1000.0)


def test_capped_key_rejects_or_queues_past_max_concurrent(write_toml: WriteFile) -> None:
    """Past max_concurrent a key answers 429 (reject) or queues the generation until a slot
    frees, then tells the call its earlier answer."""
    farm = "[providers.fal]\ngeneration_ms = 1000\n"
    reject = """
        [simulation.accounts.fal]
        max_concurrent = 1
        over_capacity = "reject"
    """
    h = world(write_toml, farm, reject)
    fal = h.account("fal")
    assert fal.call("a", 2000.0)[1] is None
    assert isinstance(fal.call("b", 2000.0)[1], RateLimited)

    h = world(write_toml, farm, "[simulation.accounts.fal]\nmax_concurrent = 1\n")
    fal = h.account("fal")
    first = fal.call("a", 2000.0)
    promised = fal.call("b", 2000.0)
    assert first[1] is None
    assert isinstance(promised[1], ProviderTimeout)
    assert fal.max_queue == 1
    h.run_events()  # the first generation ends at +1.0 s: b starts then
    ((ticket, answer),) = h.reanswers
    assert ticket == "b"
    assert answer[1] is None
    assert answer[0] == pytest.approx(1002.03125)  # polls: +1.1875, +2.03125 (after +2.0)


def test_account_faults_overlay_the_farm_profile_as_their_own_tier(write_toml: WriteFile) -> None:
    """An account's own faults replace the farm's fields for that account only."""
    farm = "[providers.fal]\nrate_limit = { rpm = 6000 }\nlatency_ms = 5\n"
    accounts = """
        [simulation.accounts.fal-small]
        plugin = "fal"
        faults = { rate_limit = { rpm = 60, burst = 1 } }
        [simulation.accounts.fal]
    """
    h = world(write_toml, farm, accounts)
    small, main = h.account("fal-small"), h.account("fal")
    assert small.tier != main.tier
    assert small.profile.rate_limit is not None
    assert small.profile.rate_limit.rpm == 60
    assert small.profile.latency_ms == main.profile.latency_ms
    assert small.call("a", 2000.0)[1] is None
    assert isinstance(small.call("b", 2000.0)[1], RateLimited)
    assert main.call("c", 2000.0)[1] is None


def test_effective_profile_matches_the_farm_engine_through_phases() -> None:
    """The simulator's view of the profile at any time is the farm engine's own."""
    clock = FakeClock(1000.0)
    h = World(load_spec("launch-week"), clock, lambda *a: None, lambda *a: None)
    fal = h.accounts["fal-main"]
    for t in (0.0, 21600.0, 22000.0, 23400.0, 47000.0, 49500.0, 80000.0):
        clock.advance(1000.0 + t - clock.now())
        assert fal.current_profile() == h.engine.profile(fal.tier)
        assert effective_profile(fal.profile, t) == h.engine.profile(fal.tier)
