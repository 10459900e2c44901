"""Bounded amplification, as properties of the pure plan on a fake clock.

Many concurrent jobs run through real :class:`JobPlan` objects over shared provider state,
against providers that answer from a random fault mix (503s, timeouts, 429s with and without
Retry-After, auth failures, latencies), with hedging on and off. The driver is a small
discrete-event loop that keeps its own record of every call, so each property is checked
against what was actually sent, not against the plan's own counters:

- into every provider instance, retries (calls of a job that already failed there, other than
  after a 429) never exceed ``max(floor, ratio × first attempts)`` over the budget's window,
  so calls ≤ first attempts × (1 + ratio) + floor;
- no call goes into a provider while a Retry-After it sent is still running;
- a job calls each provider first at most once, and retries only within its budget and
  ``max_attempts``;
- every job ends, by its deadline, and none gives up while an untried candidate was callable
  (*failed while servable*);
- with every provider down, every job fails cleanly within those same bounds.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagerouter import (
    AuthFailed,
    FakeClock,
    NoProviderAvailable,
    Provider,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.catalog import CatalogModel, Credits, ModelProvider
from imagerouter.config import RouterSettings
from imagerouter.instances import ProviderInstance, retry_budget_of
from imagerouter.preferences import RoutingPreferences, apply_preferences
from imagerouter.resilience.breaker import CircuitBreaker
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthConfig, HealthScore
from imagerouter.routing import Call, Candidate, GiveUp, JobPlan, Wait

RATIO, FLOOR, WINDOW_S, BUCKETS = 0.2, 3, 10.0, 10


@dataclass(frozen=True)
class Faults:
    """How one provider answers: probabilities of each fault, and its latency."""

    unavailable: float
    timeout: float
    rate_limited: float
    retry_after_s: float | None
    auth: float
    latency_s: float


@dataclass
class Record:
    """What the driver saw: every call into every instance, and how each job ended."""

    calls: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    ended: dict[int, tuple[str, float, object]] = field(default_factory=dict)
    per_job: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    arrived: dict[int, float] = field(default_factory=dict)
    allowed: dict[int, set[str]] = field(default_factory=dict)


def build(
    names: list[str], hedge: bool, **router: object
) -> tuple[FakeClock, RouterSettings, CatalogModel, list[Candidate]]:
    clock = FakeClock()
    config = RouterSettings.model_validate(
        {
            "retry_budget": {"ratio": RATIO, "min_retries": FLOOR, "window_s": WINDOW_S},
            "breaker": {"consecutive_failures": 4, "minimum_calls": 8, "open_base_s": 1.0},
            **router,
        }
    )
    cooldowns = Cooldowns(clock)
    model = CatalogModel(
        name="m",
        hedge=hedge,
        credits=Credits(low=1, standard=1, high=1),
        providers=tuple(ModelProvider(provider=n, model=f"{n}-model") for n in names),
    )
    candidates = [
        Candidate(
            ProviderInstance(
                name=n,
                provider=Provider(name=n),
                breaker=CircuitBreaker(n, config.breaker, clock),
                health=HealthScore(HealthConfig(), clock),
                cooldowns=cooldowns,
                clock=clock,
                retry_budget=retry_budget_of(config.retry_budget, clock),
            ),
            entry,
        )
        for n, entry in zip(names, model.providers, strict=True)
    ]
    return clock, config, model, candidates


def answer(faults: Faults, rng: random.Random) -> tuple[Exception | None, float]:
    """One call's outcome and latency under ``faults``."""
    latency = faults.latency_s * rng.uniform(0.5, 1.5)
    roll = rng.random()
    for chance, error in (
        (faults.unavailable, lambda: ProviderUnavailable("HTTP 503", status=503)),
        (faults.timeout, lambda: ProviderTimeout("timed out")),
        (faults.rate_limited, lambda: RateLimited("429", retry_after=faults.retry_after_s)),
        (faults.auth, lambda: AuthFailed("HTTP 401", status=401)),
    ):
        if roll < chance:
            return error(), latency
        roll -= chance
    return None, latency


def drive(
    faults: dict[str, Faults],
    jobs: int,
    rate: float,
    seed: int,
    hedge: bool,
    preferences: Callable[[int], RoutingPreferences | None] | None = None,
    **router: object,
) -> tuple[Record, list[Candidate], RouterSettings]:
    """Run ``jobs`` jobs arriving at ``rate`` per second through real plans; record it all.
    ``preferences`` gives a job its client's routing preferences (applied as the router does)."""
    clock, config, model, candidates = build(list(faults), hedge, **router)
    rng = random.Random(seed)
    record = Record()
    queue: list[tuple[float, int, str, int, object]] = []
    seq = 0

    def push(at: float, kind: str, job: int, payload: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (at, seq, kind, job, payload))

    plans: dict[int, JobPlan] = {}
    failed_on: dict[int, dict[str, str]] = defaultdict(dict)  # job → instance → last error
    in_flight: dict[int, int] = defaultdict(int)
    at = clock.now()
    for job in range(jobs):
        at += rng.expovariate(rate)
        push(at, "arrive", job)

    def start(job: int, call: Call) -> None:
        name = call.candidate.instance.name
        last = failed_on[job].get(name)
        kind = "first" if last is None else ("paced" if last == "RateLimited" else "retry")
        record.calls[name].append((clock.now(), kind))
        record.per_job[job].append((name, kind))
        error, latency = answer(faults[name], rng)
        if clock.now() + latency > call.deadline:
            error, latency = ProviderTimeout("attempt deadline"), call.deadline - clock.now()
        in_flight[job] += 1
        push(clock.now() + latency, "done", job, (call, error, latency, clock.now()))
        if hedge and in_flight[job] == 1:
            push(clock.now() + faults[name].latency_s * 0.8, "hedge", job)

    def step(job: int) -> None:
        if job in record.ended or in_flight[job]:
            return
        decision = plans[job].next_step()
        if isinstance(decision, Call):
            start(job, decision)
        elif isinstance(decision, Wait):
            push(decision.until, "wake", job)
        else:
            assert isinstance(decision, GiveUp)
            record.ended[job] = ("failed", clock.now(), decision.error)

    while queue:
        when, _, kind, job, payload = heapq.heappop(queue)
        clock.advance(max(0.0, when - clock.now()))
        if kind == "arrive":
            record.arrived[job] = clock.now()
            prefs = preferences(job) if preferences is not None else None
            allowed, fixed = candidates, False
            if prefs is not None:
                applied = apply_preferences(prefs, candidates, model.policy, rng)
                allowed, fixed = applied.candidates, applied.fixed_order
            record.allowed[job] = {c.instance.name for c in allowed}
            plans[job] = JobPlan(
                model,
                allowed,
                clock.now() + config.deadline_s,
                config,
                clock,
                rng,
                fixed_order=fixed,
            )
            step(job)
        elif kind == "wake":
            step(job)
        elif kind == "hedge":
            if job not in record.ended and in_flight[job] == 1:
                second = plans[job].hedge_step()
                if second is not None:
                    start(job, second)
        elif kind == "done":
            in_flight[job] -= 1
            call, error, latency, started = payload
            if job in record.ended:  # lost a hedge: abandoned in flight
                plans[job].cancelled(call, latency, started)
                continue
            plans[job].record(call, error, latency, started)
            name = call.candidate.instance.name
            if error is None:
                record.ended[job] = ("completed", clock.now(), name)
                continue
            failed_on[job][name] = type(error).__name__
            if error.retry_after is not None:
                cooldown = min(error.retry_after, config.max_cooldown_s)
                record.windows[name].append((clock.now(), clock.now() + cooldown))
            if not error.failover:
                record.ended[job] = ("failed", clock.now(), error)
            elif not in_flight[job]:
                step(job)
    return record, candidates, config


def assert_bounded(
    record: Record, candidates: list[Candidate], config: RouterSettings, jobs: int
) -> None:
    width = WINDOW_S / BUCKETS
    for name, calls in record.calls.items():
        # Retries in the budget's window never exceed max(floor, ratio × first attempts): so
        # calls ≤ first attempts × (1 + ratio) + floor there (429 retries wait for cooldowns).
        for index, (at, kind) in enumerate(calls):
            if kind != "retry":
                continue
            head = math.floor(at / width)
            seen = [k for t, k in calls[: index + 1] if head - BUCKETS < math.floor(t / width)]
            firsts, retries = seen.count("first"), seen.count("retry")
            assert retries <= max(FLOOR, RATIO * firsts), (name, at, firsts, retries)
            assert firsts + retries <= firsts * (1 + RATIO) + FLOOR
        # Never a call inside a Retry-After window the provider had sent.
        for at, _ in calls:
            for opened, until in record.windows.get(name, []):
                assert not opened < at < until - 1e-9, (name, at, opened, until)
    assert len(record.ended) == jobs  # every job ended...
    for job, (outcome, at, detail) in record.ended.items():
        assert at <= record.arrived[job] + config.deadline_s + 1e-6  # ...by its deadline
        if outcome == "failed" and isinstance(detail, NoProviderAvailable):
            assert not detail.failed_while_servable, detail.servable
    names = {c.instance.name for c in candidates}
    for calls in record.per_job.values():
        firsts = [name for name, kind in calls if kind == "first"]
        assert len(firsts) == len(set(firsts)) <= len(names)  # each provider first once
        for index, (_, kind) in enumerate(calls):
            if kind != "first":  # retries stop once the job made max_attempts calls
                assert index < config.max_attempts


fault = st.builds(
    Faults,
    unavailable=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    timeout=st.sampled_from([0.0, 0.05]),
    rate_limited=st.sampled_from([0.0, 0.1, 0.4]),
    retry_after_s=st.sampled_from([None, 0.5, 2.0, 30.0]),
    auth=st.sampled_from([0.0, 0.02]),
    latency_s=st.sampled_from([0.05, 0.5, 2.0]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=st.lists(fault, min_size=1, max_size=4),
    rate=st.sampled_from([5.0, 50.0, 400.0]),
    seed=st.integers(0, 2**16),
    hedge=st.booleans(),
)
def test_random_fault_mixes_never_amplify_and_never_fail_while_servable(
    faults: list[Faults], rate: float, seed: int, hedge: bool
) -> None:
    mix = {f"p{i}": f for i, f in enumerate(faults)}
    jobs = 300
    record, candidates, config = drive(mix, jobs, rate, seed, hedge, deadline_s=20)
    assert_bounded(record, candidates, config, jobs)


PREFERENCES = [
    None,
    RoutingPreferences(allow_fallbacks=False),
    RoutingPreferences(only=["p0"]),
    RoutingPreferences(ignore=["p0"]),
    RoutingPreferences(order=["p1", "p0"], allow_fallbacks=False),
    RoutingPreferences(sort="latency"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=st.lists(fault, min_size=2, max_size=4),
    rate=st.sampled_from([5.0, 50.0, 400.0]),
    seed=st.integers(0, 2**16),
)
def test_client_preferences_never_count_as_failed_while_servable(
    faults: list[Faults], rate: float, seed: int
) -> None:
    """Jobs whose clients rule providers out (only, ignore, no fallbacks) call only the
    providers they allow, stay within every bound, and a job that ends because of its own
    preferences is never counted as failed while servable."""
    mix = {f"p{i}": f for i, f in enumerate(faults)}
    jobs = 300
    record, candidates, config = drive(
        mix,
        jobs,
        rate,
        seed,
        False,
        preferences=lambda job: PREFERENCES[job % len(PREFERENCES)],
        deadline_s=20,
    )
    assert_bounded(record, candidates, config, jobs)
    for job, calls in record.per_job.items():
        assert {name for name, _ in calls} <= record.allowed[job], job
    assert all(len(record.allowed[j]) == 1 for j in range(1, jobs, len(PREFERENCES)))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), rate=st.sampled_from([10.0, 200.0]), seed=st.integers(0, 2**16))
def test_total_outage_ends_every_job_cleanly_within_the_bounds(
    n: int, rate: float, seed: int
) -> None:
    down = Faults(1.0, 0.0, 0.0, None, 0.0, 0.05)
    jobs = 400
    record, candidates, config = drive(
        {f"p{i}": down for i in range(n)}, jobs, rate, seed, False, deadline_s=5
    )
    assert_bounded(record, candidates, config, jobs)
    assert all(outcome == "failed" for outcome, _, _ in record.ended.values())
    for _, _, error in record.ended.values():
        assert isinstance(error, NoProviderAvailable)
    # Per provider: one first call per job at most, plus retries of at most
    # max(floor, ratio × first attempts) in each stretch the budget's window covers.
    stretch = WINDOW_S * (1 - 1 / BUCKETS)
    for name, calls in record.calls.items():
        span = calls[-1][0] - calls[0][0]
        assert len(calls) <= jobs * (1 + RATIO) + FLOOR * (math.ceil(span / stretch) + 1), name


def test_a_cold_burst_fails_no_job_while_the_second_provider_is_healthy() -> None:
    """200 first calls in flight before the down provider's first 503: every one fails over."""
    mix = {
        "down": Faults(1.0, 0.0, 0.0, None, 0.0, 0.2),
        "healthy": Faults(0.0, 0.0, 0.0, None, 0.0, 0.5),
    }
    for seed in range(5):
        record, candidates, config = drive(mix, 1000, 2000.0, seed, False)
        assert_bounded(record, candidates, config, 1000)
        assert all(outcome == "completed" for outcome, _, _ in record.ended.values())
