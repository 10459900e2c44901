"""The simulator drives the router's own plans and state machines on virtual time."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from imagerouter.errors import ConfigError
from imagerouter.resilience.breaker import CircuitBreaker
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthScore
from imagerouter.routing import JobPlan
from imagerouter.simulate.report import summarize
from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import apply_policy, load_spec

from .conftest import WriteFile

OUTAGE = """
    [[providers.fal.phases]]
    at_s = 5
    until_s = 15
    faults = { down = true }
"""


def run(path: Path, **overrides: Any) -> Simulation:
    sim = Simulation(load_spec(path).with_overrides(**overrides))
    sim.run()
    return sim


def test_transitions_of_the_real_circuit_breaker_are_the_reports(
    small_scenario: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every breaker transition in the report is one the router's own CircuitBreaker made;
    its health scores and cooldowns are the router's classes too (no second implementation)."""
    made: list[tuple[str, str, str]] = []
    outcomes: Counter[str] = Counter()
    original_transition = CircuitBreaker._transition
    original_record = HealthScore.record

    def spy_transition(self: CircuitBreaker, to: Any, now: float, reason: str, *a: Any) -> None:
        made.append((self.name, to.value, reason))
        original_transition(self, to, now, reason, *a)

    def spy_record(self: HealthScore, success: bool, latency_s: float | None = None) -> None:
        outcomes["ok" if success else "failed"] += 1
        original_record(self, success, latency_s)

    monkeypatch.setattr(CircuitBreaker, "_transition", spy_transition)
    monkeypatch.setattr(HealthScore, "record", spy_record)
    sim = run(small_scenario(fal='error_rates = { "429" = 0.05 }', extra=OUTAGE), hours=0.01)

    fal = sim.router.instances["fal"]
    assert type(fal.breaker) is CircuitBreaker
    assert type(fal.health) is HealthScore
    assert type(fal.cooldowns) is Cooldowns
    reported = [(t.name, t.to_state, t.reason) for t in sim.metrics.transitions]
    assert reported == made
    assert ("fal", "open", "3 consecutive failures") in reported
    assert reported[-1] == ("fal", "closed", "probes succeeded")
    summary = summarize(sim)
    assert summary["breakers"]["trips"] == sum(1 for _, to, _ in made if to == "open") >= 1
    assert summary["instances"]["fal"]["breaker_trips"] >= 1
    errors = summary["instances"]["fal"]["errors"]
    assert outcomes["failed"] == errors["ProviderUnavailable"]
    assert outcomes["ok"] == sum(i["served"] for i in summary["instances"].values())
    assert summary["jobs"]["completed"] == summary["jobs"]["arrived"]


def test_jobs_are_driven_through_router_plans(
    small_scenario: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job is one JobPlan from Router.plan, asked next_step and told record, as
    Router.generate does."""
    counts: Counter[str] = Counter()
    for name in ("next_step", "record"):
        original = getattr(JobPlan, name)

        def spy(self: JobPlan, *args: Any, _name: str = name, _f: Any = original) -> Any:
            counts[_name] += 1
            return _f(self, *args)

        monkeypatch.setattr(JobPlan, name, spy)
    sim = run(small_scenario(), hours=0.005)
    m = sim.metrics
    assert counts["record"] == sum(m.calls_total) == m.jobs_completed > 0
    assert counts["next_step"] >= m.jobs_arrived


def test_same_seed_same_run(small_scenario: Any) -> None:
    """A run is a function of its scenario and seed: the same seed, the same summary."""
    path = small_scenario(fal='error_rates = { "503" = 0.1 }', extra=OUTAGE)
    first, second = summarize(run(path, hours=0.01)), summarize(run(path, hours=0.01))
    for summary in (first, second):
        summary.pop("speed")
    assert first == second
    other = summarize(run(path, hours=0.01, seed=2))
    assert other["jobs"]["arrived"] != first["jobs"]["arrived"]


def test_the_cyclic_collector_is_paused_for_a_run_and_left_as_it_was(
    small_scenario: Any,
) -> None:
    """Jobs are freed by reference counting as they end; the collector, paused while the
    run goes, is on again afterwards (and stays off if it was off)."""
    path = small_scenario(fal='error_rates = { "503" = 0.1 }', extra=OUTAGE)
    seen: list[bool] = []
    sim = Simulation(
        load_spec(path).with_overrides(hours=0.01), progress=lambda *_: seen.append(gc.isenabled())
    )
    assert gc.isenabled()
    sim.run()
    assert seen  # told at least once, at the end of the run
    assert not any(seen)
    assert gc.isenabled()
    gc.disable()
    try:
        run(path, hours=0.01)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_retry_after_is_honoured_in_a_429_storm() -> None:
    """Under the farm's 429 storm every job succeeds, 429s fail over, and no call lands
    inside a Retry-After window the provider issued."""
    sim = run(Path("fal-429-storm"), hours=0.1)
    summary = summarize(sim)
    assert summary["jobs"]["success_rate"] == 1.0
    assert summary["retry_after"]["issued"] > 0
    assert summary["retry_after"]["inside_window"] == 0
    assert summary["calls"]["failovers"] == summary["instances"]["fal"]["errors"]["RateLimited"]


def test_total_outage_fails_every_job_within_the_retry_budget(write_toml: WriteFile) -> None:
    """Both providers of a model down: every job fails, calls stay within the retry budget's
    bound per provider ((1 + ratio) × first attempts into it + floor per window), and the open
    breakers keep most jobs from calling at all."""
    path = write_toml(
        "outage.toml",
        """
        [simulation]
        hours = 0.01
        peak_per_min = 600
        models = { "flux-dev" = 1 }
        [simulation.config.router]
        deadline_s = 5
        [providers.fal]
        down = true
        [providers.wavespeed]
        down = true
        """,
    )
    summary = summarize(run(path))
    jobs = summary["jobs"]
    assert jobs["completed"] == 0
    assert jobs["failed"] == jobs["arrived"] > 0
    assert set(jobs["failed_by"]) <= {"retry_budget", "wait_cap", "deadline", "max_attempts"}
    assert jobs["failed_while_servable"] == 0
    windows = 36 / 10 + 1  # a 36 s run, 10 s budget windows
    # Each provider's retry budget bounds the calls into it: a job's first call into it (its
    # first choice or a failover) plus budgeted retries.
    for name, instance in summary["instances"].items():
        assert instance["calls"] <= 1.2 * jobs["arrived"] + 10 * windows, name
    # Once both breakers are open they hold traffic back: one panic probe per base open time,
    # not one per job, so fewer calls than jobs.
    assert summary["calls"]["total"] < jobs["arrived"]


def test_hedged_model_cancels_the_slower_call(small_scenario: Any, write_toml: WriteFile) -> None:
    """A hedged model starts the next provider at the first one's p95 and cancels the loser."""
    policy = write_toml(
        "hedge.toml",
        """
        [catalog.models."flux-dev"]
        hedge = true
        credits = { low = 6, standard = 6, high = 6 }
        providers = [
            { provider = "fal", model = "fal-ai/flux/dev", cost_usd = 0.025 },
            { provider = "wavespeed", model = "wavespeed-ai/flux-dev", cost_usd = 0.02 },
        ]
        """,
    )
    spec = apply_policy(load_spec(small_scenario()), policy).with_overrides(hours=0.01)
    sim = Simulation(spec)
    sim.run()
    summary = summarize(sim)
    assert summary["jobs"]["success_rate"] == 1.0
    assert summary["calls"]["hedges_cancelled"] > 0
    assert summary["instances"]["wavespeed"]["served"] > 0
    assert summary["calls"]["wasted"] == summary["calls"]["hedges_cancelled"]


def test_concurrency_limit_makes_jobs_wait(write_toml: WriteFile) -> None:
    """A router concurrency limit below the load makes jobs wait for a slot (queueing time)."""
    path = write_toml(
        "limit.toml",
        """
        [simulation]
        hours = 0.005
        peak_per_min = 1200
        models = { "flux-dev" = 1 }
        [simulation.config.providers.fal]
        max_concurrency = 2
        [simulation.config.providers.wavespeed]
        max_concurrency = 2
        [providers.fal]
        generation_ms = 400
        [providers.wavespeed]
        generation_ms = 400
        """,
    )
    summary = summarize(run(path))
    assert summary["latency"]["queueing_s"]["p95"] > 0.05
    assert summary["jobs"]["completed"] > 0


def test_content_rejection_ends_the_job_without_failover(small_scenario: Any) -> None:
    """A content-policy refusal fails the job at once: no failover to the next provider."""
    summary = summarize(run(small_scenario(fal='error_rates = { "content_policy" = 0.2 }')))
    rejected = summary["jobs"]["failed_by"]["ContentRejected"]
    assert rejected > 0
    assert summary["jobs"]["failed"] == rejected
    assert summary["calls"]["failovers"] == 0


def test_routing_shares_steer_the_simulated_jobs(small_scenario: Any) -> None:
    """A share of clients with ``only = ["wavespeed"]`` never reaches fal; without the share
    fal (first in flux-dev's catalog order) serves."""
    only = """
        [[simulation.routing]]
        share = 1.0
        preferences = { only = ["wavespeed"] }
    """
    path = small_scenario()
    text = path.read_text(encoding="utf-8")
    plain = run(path)
    index = plain._index
    assert plain.metrics.served_total[index["fal"]] > 0
    path.write_text(
        text.replace("[simulation.config.router]", only + "\n[simulation.config.router]")
    )
    steered = run(path)
    assert steered.metrics.served_total[steered._index["wavespeed"]] > 0
    assert steered.metrics.calls_total[steered._index["fal"]] == 0


def test_routing_share_price_cap_and_unknown_provider(small_scenario: Any) -> None:
    """Jobs above a share's ``max_price_credits`` never arrive (the API would refuse them);
    a share naming a provider the model lacks is a config error naming the share."""
    path = small_scenario()
    text = path.read_text(encoding="utf-8")

    def with_share(preferences: str) -> Path:
        share = f"[[simulation.routing]]\nshare = 1.0\npreferences = {preferences}\n\n"
        path.write_text(
            text.replace("[simulation.config.router]", share + "[simulation.config.router]")
        )
        return path

    capped = run(with_share("{ max_price_credits = 1 }"))
    assert capped.refused > 0
    assert capped.metrics.jobs_arrived == 0
    with pytest.raises(ConfigError, match=r"simulation\.routing\[0\].*unknown provider 'foo'"):
        Simulation(load_spec(with_share('{ only = ["foo"] }')))


def test_video_jobs_take_the_video_generation_time_and_images_do_not(
    small_scenario: Any,
) -> None:
    """Veo 3 Fast beside flux-dev, fal's videos taking 3 s: the video jobs' provider time is
    the video one, the image jobs' stays the image one (an image-only run draws as before)."""
    video = small_scenario(hours=0.005, rate=600, fal="video_generation_ms = 3000")
    text = video.read_text().replace('"flux-dev" = 1.0', '"veo3-fast" = 1.0')
    video.write_text(text)
    videos = summarize(run(video))
    assert videos["jobs"]["completed"] > 0
    assert 3.0 <= videos["latency"]["total_s"]["p50"] < 4.0
    images = summarize(run(small_scenario(hours=0.005, rate=600, fal="video_generation_ms = 3000")))
    assert images["latency"]["total_s"]["p95"] < 1.0


def test_a_video_jobs_provider_cost_is_its_seconds_at_the_per_second_price(
    small_scenario: Any,
) -> None:
    """Veo 3 Fast's default video on fal: 8 s with sound at $0.15 a second, $1.20 a job."""
    path = small_scenario(hours=0.002, rate=300)
    path.write_text(path.read_text().replace('"flux-dev" = 1.0', '"veo3-fast" = 1.0'))
    sim = run(path)
    completed = sim.metrics.jobs_completed
    assert completed > 0
    assert sum(sim.metrics.usd) == pytest.approx(1.2 * completed)
