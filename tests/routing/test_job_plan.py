"""The routing plan on a fake clock: every decision, and why it was made."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from imagerouter import (
    AuthFailed,
    ContentRejected,
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
from imagerouter.resilience.breaker import BreakerState, CircuitBreaker
from imagerouter.resilience.concurrency import FixedLimit
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthConfig, HealthScore
from imagerouter.routing import Call, Candidate, GiveUp, JobPlan, Wait


class Plans:
    """Builds plans over shared provider state, as one router would."""

    def __init__(self, names: list[str], policy: str = "priority", **settings: object) -> None:
        self.clock = FakeClock()
        self.settings = RouterSettings.model_validate(settings)
        cooldowns = Cooldowns(self.clock)
        self.instances = {
            name: ProviderInstance(
                name=name,
                provider=Provider(name=name),
                breaker=CircuitBreaker(name, self.settings.breaker, self.clock),
                health=HealthScore(HealthConfig(), self.clock),
                cooldowns=cooldowns,
                clock=self.clock,
                retry_budget=retry_budget_of(self.settings.retry_budget, self.clock),
            )
            for name in names
        }
        self.model = CatalogModel(
            name="m",
            policy=policy,
            credits=Credits(low=1, standard=1, high=1),
            providers=tuple(
                ModelProvider(provider=n, model=f"{n}-model", cost_usd=1.0 + i)
                for i, n in enumerate(reversed(names))
            )[::-1],
        )
        self.rng = random.Random(1)

    def plan(self, deadline_s: float = 60.0) -> JobPlan:
        candidates = [Candidate(self.instances[e.provider], e) for e in self.model.providers]
        return JobPlan(
            self.model,
            candidates,
            self.clock.now() + deadline_s,
            self.settings,
            self.clock,
            self.rng,
        )


def call_of(step: object) -> Call:
    assert isinstance(step, Call), step
    return step


def test_retryable_failure_fails_over_at_once_and_is_recorded() -> None:
    """A 503 from the first provider sends the next call to the second, with no wait."""
    plans = Plans(["fal", "wavespeed"])
    plan = plans.plan()
    first = call_of(plan.next_step())
    assert first.candidate.instance.name == "fal"
    plan.record(first, ProviderUnavailable("HTTP 503", status=503), 0.1, 0.0)
    second = call_of(plan.next_step())
    assert second.candidate.instance.name == "wavespeed"
    plan.record(second, None, 0.2, 0.0)
    assert [(a.provider, a.outcome, a.error_class, a.status, a.reason) for a in plan.attempts] == [
        ("fal", "error", "ProviderUnavailable", 503, "first available in priority order"),
        ("wavespeed", "ok", None, None, "failover after ProviderUnavailable from fal"),
    ]


def test_rate_limited_provider_is_skipped_by_every_job_until_retry_after() -> None:
    """A 429 with Retry-After cools the provider down for all jobs, and the skip says so."""
    plans = Plans(["fal", "wavespeed"])
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), RateLimited("429", retry_after=2.0), 0.05, 0.0)
    other_job = plans.plan()
    assert call_of(other_job.next_step()).candidate.instance.name == "wavespeed"
    assert other_job.attempts[0].reason.startswith("Retry-After cooldown until +2.00s")
    plans.clock.advance(2.01)
    assert call_of(plans.plan().next_step()).candidate.instance.name == "fal"


def test_with_no_alternative_a_job_waits_out_retry_after_never_earlier() -> None:
    """The only provider answered 429 + Retry-After: 3: the job sleeps at least 3 s."""
    plans = Plans(["openai"])
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), RateLimited("429", retry_after=3.0), 0.05, 0.0)
    step = plan.next_step()
    assert isinstance(step, Wait)
    assert step.until - plans.clock.now() >= 3.0
    plans.clock.advance(step.until - plans.clock.now())
    assert call_of(plan.next_step()).candidate.instance.name == "openai"


def test_retry_after_beyond_the_deadline_fails_over_or_gives_up_now() -> None:
    """A Retry-After longer than the job's time left excludes the provider for this job."""
    plans = Plans(["openai"])
    plan = plans.plan(deadline_s=5.0)
    plan.record(call_of(plan.next_step()), RateLimited("429", retry_after=30.0), 0.05, 0.0)
    step = plan.next_step()
    assert isinstance(step, GiveUp)
    assert isinstance(step.error, NoProviderAvailable)
    assert step.error.attempts == plan.attempts


def test_retrying_the_same_provider_backs_off_first() -> None:
    """With no other candidate, a retry after a 503 waits a jittered backoff, then calls."""
    plans = Plans(["fal"], backoff_base_s=0.5, backoff_cap_s=4.0)
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    step = plan.next_step()
    assert isinstance(step, Wait)
    assert step.reason == "backoff"
    assert 0 <= step.until - plans.clock.now() <= 1.0 + plans.settings.wake_margin_s
    plans.clock.advance(step.until - plans.clock.now())
    assert call_of(plan.next_step()).candidate.instance.name == "fal"


def test_content_rejection_and_auth_failure() -> None:
    """Content rejections may not fail over; an auth failure excludes its provider only."""
    assert not ContentRejected("no").failover
    plans = Plans(["openai", "fal"])
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), AuthFailed("HTTP 401", status=401), 0.01, 0.0)
    assert call_of(plan.next_step()).candidate.instance.name == "fal"


def test_open_breaker_is_skipped_with_its_reason() -> None:
    """Consecutive failures open the breaker; the next job skips it and says why."""
    plans = Plans(["fal", "wavespeed"], breaker={"consecutive_failures": 2})
    for _ in range(2):
        plan = plans.plan()
        plan.record(call_of(plan.next_step()), ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    assert plans.instances["fal"].breaker.state is BreakerState.OPEN
    plan = plans.plan()
    assert call_of(plan.next_step()).candidate.instance.name == "wavespeed"
    assert (plan.attempts[0].provider, plan.attempts[0].reason) == ("fal", "breaker open")


def test_every_breaker_open_lets_one_panic_probe_through() -> None:
    """When all candidates' breakers are open, the least recently failed one gets a probe."""
    plans = Plans(["fal", "wavespeed"], breaker={"consecutive_failures": 1})
    for name in ("wavespeed", "fal"):  # wavespeed fails first, so it failed least recently
        plans.instances[name].breaker.allow()
        plans.instances[name].breaker.record_failure(0.1)
        plans.clock.advance(0.5)
    plan = plans.plan()
    step = call_of(plan.next_step())
    assert step.candidate.instance.name == "wavespeed"
    assert plan.attempts[-1].reason.startswith("panic")
    assert plans.instances["wavespeed"].breaker.state is BreakerState.HALF_OPEN


def fail_then_ask(plans: Plans, plan: JobPlan, error: Exception) -> object:
    """Fail the plan's next call with ``error``; return what it does next, past any backoff."""
    plan.record(call_of(plan.next_step()), error, 0.1, 0.0)
    step = plan.next_step()
    if isinstance(step, Wait) and step.reason == "backoff":
        plans.clock.advance(step.until - plans.clock.now())
        step = plan.next_step()
    return step


def test_retry_budget_caps_retries_into_the_provider_that_failed() -> None:
    """Once retries into a provider exceed ratio × its first attempts (and the floor), jobs
    stop retrying it, and say so: the budget, not the deadline."""
    plans = Plans(
        ["fal"],
        breaker={"consecutive_failures": 0, "minimum_calls": 100, "window_size": 100},
        retry_budget={"ratio": 0.2, "min_retries": 3},
    )
    outcomes = Counter()
    for _ in range(10):
        plan = plans.plan()
        step = fail_then_ask(plans, plan, ProviderUnavailable("HTTP 503"))
        outcomes["retried" if isinstance(step, Call) else "stopped"] += 1
        if isinstance(step, Call):
            plan.release(step.candidate)
        else:
            assert isinstance(step, GiveUp)
            assert step.error.reason == "retry_budget"
            assert not step.error.failed_while_servable  # fal failed this very job
    assert outcomes == Counter({"retried": 3, "stopped": 7})  # floor 3; 0.2 × 10 = 2 < 3


def test_failover_is_admitted_by_the_target_not_by_a_retry_budget() -> None:
    """With fal's budget spent by its own outage, every job still fails over to wavespeed:
    a failover adds no load to the provider that failed."""
    plans = Plans(
        ["fal", "wavespeed"],
        breaker={"consecutive_failures": 0, "minimum_calls": 1000, "window_size": 1000},
        retry_budget={"ratio": 0.0, "min_retries": 0},
    )
    for _ in range(200):
        plan = plans.plan()
        step = fail_then_ask(plans, plan, ProviderUnavailable("HTTP 503"))
        assert call_of(step).candidate.instance.name == "wavespeed"
        assert call_of(step).reason == "failover after ProviderUnavailable from fal"
        plan.record(call_of(step), None, 0.1, 0.0)
    assert plans.instances["fal"].retry_budget.snapshot()["retries"] == 0


def test_retries_into_one_provider_never_starve_another() -> None:
    """Jobs of a model served only by fal spend fal's budget; jobs retrying wavespeed still
    have wavespeed's own."""
    plans = Plans(
        ["fal", "wavespeed"],
        breaker={"consecutive_failures": 0, "minimum_calls": 1000, "window_size": 1000},
        retry_budget={"ratio": 0.0, "min_retries": 2},
    )
    fal = plans.instances["fal"]
    for _ in range(5):  # spend fal's floor and more
        if fal.retry_budget.can_spend():
            fal.retry_budget.try_spend()
    assert not fal.retry_budget.can_spend()
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    step = fail_then_ask(plans, plan, ProviderUnavailable("HTTP 503"))  # wavespeed fails too
    assert call_of(step).candidate.instance.name == "wavespeed"  # its own budget: a retry
    assert call_of(step).reason.startswith("retry #1")
    assert plan.attempts[-1].reason.startswith("retry budget spent")  # fal skipped, said so


def test_a_retry_after_a_429_waits_for_the_cooldown_instead_of_the_budget() -> None:
    """429 retries are paced by the provider's Retry-After, so a spent budget does not stop
    them."""
    plans = Plans(["openai"], retry_budget={"ratio": 0.0, "min_retries": 0})
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), RateLimited("429", retry_after=1.0), 0.05, 0.0)
    step = plan.next_step()
    assert isinstance(step, Wait)
    plans.clock.advance(step.until - plans.clock.now())
    assert call_of(plan.next_step()).candidate.instance.name == "openai"


def test_servable_names_the_untried_candidates_that_could_take_the_job() -> None:
    """The measure itself: after fal failed, wavespeed (untried, closed, no cooldown) could
    serve the job; with wavespeed's breaker open, or once tried, nothing could."""
    plans = Plans(["fal", "wavespeed"], breaker={"consecutive_failures": 1})
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    assert plan.servable() == ["wavespeed"]
    ws = plans.instances["wavespeed"]
    ws.breaker.allow()
    ws.breaker.record_failure(0.1)
    assert plan.servable() == []
    plans.clock.advance(plans.settings.deadline_s + 1)
    assert plan.servable() == []  # no time left: nothing can serve it before its deadline


def test_the_attempt_cap_never_stops_a_failover_to_an_untried_provider() -> None:
    """max_attempts caps retries; a provider the job has not tried still takes it, so the cap
    never makes a job fail while another provider could serve it."""
    plans = Plans(["fal", "wavespeed"], max_attempts=1)
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    step = call_of(plan.next_step())
    assert step.candidate.instance.name == "wavespeed"
    plan.record(step, ProviderUnavailable("HTTP 503"), 0.1, 0.0)
    step = plan.next_step()
    assert isinstance(step, GiveUp)
    assert (step.error.reason, step.error.servable) == ("max_attempts", [])


def test_attempt_cap_ends_the_job() -> None:
    """max_attempts calls, then the job gives up naming the cap."""
    plans = Plans(["a", "b"], max_attempts=2, retry_budget={"min_retries": 100})
    plan = plans.plan()
    for _ in range(2):
        plan.record(call_of(plan.next_step()), ProviderUnavailable("x"), 0.1, 0.0)
    step = plan.next_step()
    assert isinstance(step, GiveUp)
    assert "2 attempts made" in str(step.error)


def test_full_concurrency_waits_and_rechecks() -> None:
    """A provider at its concurrency cap is skipped; with no other, the job rechecks soon."""
    plans = Plans(["openai"])
    plans.instances["openai"].limit = FixedLimit(1)
    busy = call_of(plans.plan().next_step())
    plan = plans.plan()
    step = plan.next_step()
    assert isinstance(step, Wait)
    assert plan.attempts[0].reason == "concurrency full (1)"
    assert busy.candidate.instance.limit.in_flight == 1


@pytest.mark.parametrize(("policy", "first"), [("priority", "a"), ("cost", "c")])
def test_static_policies_pick_in_order(policy: str, first: str) -> None:
    """priority follows the catalog; cost picks the cheapest (here the last)."""
    assert (
        call_of(Plans(["a", "b", "c"], policy).plan().next_step()).candidate.entry.provider == first
    )


def test_latency_policy_prefers_the_fastest_recent_p50() -> None:
    """latency picks the provider with the lowest recent p50."""
    plans = Plans(["slow", "fast"], policy="latency")
    for _ in range(20):
        plans.instances["slow"].health.record(True, 2.0)
        plans.instances["fast"].health.record(True, 0.2)
    assert call_of(plans.plan().next_step()).candidate.instance.name == "fast"


def test_weighted_policy_shares_traffic_by_health_and_weight() -> None:
    """weighted sends more first calls to the heavier provider, but some to each."""
    plans = Plans(["a", "b"], policy="weighted")
    plans.instances["a"].weight = 3.0
    firsts = Counter()
    for _ in range(400):
        plan = plans.plan()
        step = call_of(plan.next_step())
        firsts[step.candidate.instance.name] += 1
        plan.release(step.candidate)
    assert firsts["a"] > 2 * firsts["b"] > 0


def test_hedge_goes_to_another_provider_only() -> None:
    """A hedge call never goes to the provider already in flight; with one provider, none."""
    plans = Plans(["fal", "wavespeed"])
    plan = plans.plan()
    first = call_of(plan.next_step())
    hedge = plan.hedge_step()
    assert hedge is not None
    assert hedge.candidate.instance.name == "wavespeed" != first.candidate.instance.name
    solo = Plans(["openai"]).plan()
    solo.next_step()
    assert solo.hedge_step() is None


def test_with_every_breaker_open_a_job_waits_for_the_next_panic_probe() -> None:
    """Panic probes come once per open_base_s; a job that finds one just spent waits for the
    next instead of giving up, although the breaker's own cooldown is past the wait cap."""
    plans = Plans(["fal"], breaker={"consecutive_failures": 1, "open_base_s": 5.0}, max_wait_s=10)
    breaker = plans.instances["fal"].breaker
    breaker.allow()
    breaker.record_failure(0.1)  # open for 5 s
    for wait in (1.0, 5.0):  # two failed panic probes: open for 10 s, then 20 s
        plans.clock.advance(wait)
        assert breaker.force_probe()
        breaker.record_failure(0.1)
    assert breaker.open_until - plans.clock.now() == 20.0  # past max_wait_s
    step = plans.plan().next_step()
    assert isinstance(step, Wait), step
    assert step.until - plans.clock.now() <= 5.0 + plans.settings.wake_margin_s
    plans.clock.advance(step.until - plans.clock.now())
    assert call_of(plans.plan().next_step()).reason.startswith("panic probe")


def test_a_pace_is_forgotten_after_forget_s_even_if_no_call_succeeded() -> None:
    """A key paced by its 429s and quiet for ``forget_s`` is called again without waiting for
    its pace, though no call has succeeded since (before, only a success could forget a pace:
    the jobs that its slow pace timed out kept it forever)."""
    plans = Plans(["openai"], pace={"forget_s": 30.0})
    plan = plans.plan()
    plan.record(call_of(plan.next_step()), RateLimited("429", retry_after=5.0), 0.05, 0.0)
    instance = plans.instances["openai"]
    assert instance.pace is not None
    assert instance.pace.rate_per_s == pytest.approx(0.2)
    plans.clock.advance(5.01)
    call_of(plans.plan().next_step())  # the paced start after the window, then nothing
    step = plans.plan().next_step()
    assert isinstance(step, Wait), step
    plans.clock.advance(30.0)
    assert instance.pace is not None
    call_of(plans.plan().next_step())
    call_of(plans.plan().next_step())  # unpaced: no spacing between the two
    assert instance.pace is None


@pytest.mark.parametrize(
    ("deadline_s", "attempt_timeout_s", "counted"),
    [
        (1.0, 120.0, False),  # the job's time left ended it, shorter than the provider's p95
        (10.0, 120.0, True),  # the job's time left ended it, but it was longer than the p95
        (300.0, 1.0, True),  # the attempt timeout ended it: the provider had its full time
    ],
)
def test_a_timeout_the_jobs_own_deadline_caused_is_not_the_providers_failure(
    deadline_s: float, attempt_timeout_s: float, counted: bool
) -> None:
    """A job near its deadline (the one that waited longest behind a window or a pace) calls
    with less time than the provider's calls take and times out: that says nothing of the
    provider, so its breaker and health do not count it. Given the p95 or more, or its full
    attempt timeout, a timeout counts as before."""
    plans = Plans(
        ["openai"], attempt_timeout_s=attempt_timeout_s, breaker={"consecutive_failures": 1}
    )
    instance = plans.instances["openai"]
    for _ in range(20):
        instance.health.record(True, 2.0)  # the provider's calls take 2 s
    plan = plans.plan(deadline_s=deadline_s)
    call = call_of(plan.next_step())
    given = call.deadline - plans.clock.now()
    assert given == min(deadline_s, attempt_timeout_s)
    plans.clock.advance(given)
    score = instance.health.score
    plan.record(call, ProviderTimeout("no answer"), given, 0.0)
    assert (instance.breaker.state is BreakerState.OPEN) is counted
    assert (instance.health.score < score) is counted


def storm(plans: Plans, name: str, retry_after: float) -> ProviderInstance:
    """Two jobs' calls into ``name`` answered 429 in a row, each window waited out: a storm
    (the key took no call between), so its pace is a storm's."""
    for _ in range(2):
        plan = plans.plan()
        plan.record(
            call_of(plan.next_step()), RateLimited("429", retry_after=retry_after), 0.05, 0.0
        )
        plans.clock.advance(retry_after + 0.01)
    instance = plans.instances[name]
    assert instance.pace is not None
    assert instance.pace.after_refusals
    return instance


def test_any_answer_but_a_429_after_a_storm_ends_the_pace() -> None:
    """After a storm of 429s, the first call the key answers otherwise (here a timeout of a
    job out of time) ends its pace: only a 429 says the key's limit refused a call, and the
    storm's cuts said nothing of a rate. Before, only a success counted, the pace's starts
    went to the jobs that had waited longest, which timed out, and the pace never grew."""
    plans = Plans(["openai"])
    instance = storm(plans, "openai", 1.0)
    plan = plans.plan(deadline_s=0.5)
    call = call_of(plan.next_step())
    plans.clock.advance(0.5)
    plan.record(call, ProviderTimeout("no answer"), 0.5, 0.0)
    assert instance.pace is None


def test_in_a_storm_a_paced_job_looks_again_when_the_probe_is_answered() -> None:
    """In a storm one call a window probes the key; the jobs the pace holds look again when
    the probe's answer is due (the key's p95 after it started), not at the next start a
    window later: a success ends the pace and they call then."""
    plans = Plans(["openai"])
    instance = plans.instances["openai"]
    for _ in range(20):
        instance.health.record(True, 0.3)
    storm(plans, "openai", 2.0)
    probe_job = plans.plan()
    probe = call_of(probe_job.next_step())
    waiting = plans.plan()
    step = waiting.next_step()
    assert isinstance(step, Wait), step
    assert step.until - plans.clock.now() == pytest.approx(0.3 + plans.settings.wake_margin_s)
    plans.clock.advance(0.3)
    probe_job.record(probe, None, 0.3, 0.0)
    plans.clock.advance(step.until - plans.clock.now())
    assert call_of(waiting.next_step()).reason == "first available in priority order"


def test_a_job_a_storms_pace_alone_would_fail_calls_the_key_once_past_it() -> None:
    """In a storm (two 429s, no call taken), the next paced start of a key is past this
    job's deadline and nothing else holds the key: the job calls it once anyway (a storm's
    pace is one probe a window, not a rate the key was seen to take). Its 429 starts a
    window no job jumps, and its next give-up is final. Out of a storm it would give up."""
    plans = Plans(["openai"])
    storm(plans, "openai", 5.0)
    call_of(plans.plan().next_step())  # the probe of this window; the next start is 5 s away
    job = plans.plan(deadline_s=3.0)
    jumped = call_of(job.next_step())
    assert jumped.reason.startswith("past its pace")
    assert job.attempts[-1].reason == "paced by its 429s"
    job.record(jumped, RateLimited("429", retry_after=1.0), 0.05, 0.0)
    step = job.next_step()
    assert isinstance(step, Wait), "the window holds it: no job calls inside it"
    plans.clock.advance(step.until - plans.clock.now())
    end = job.next_step()
    assert isinstance(end, GiveUp), end
    assert end.error.reason == "wait_cap"


def test_a_pace_learned_among_calls_taken_is_not_jumped() -> None:
    """A key paced at its limit (a 429, then calls taken): a job whose next paced start is
    past its deadline gives up without calling, as the pace exists to prevent that
    stampede of calls the key would refuse."""
    plans = Plans(["openai"])
    instance = plans.instances["openai"]
    first = plans.plan()
    first.record(call_of(first.next_step()), RateLimited("429", retry_after=5.0), 0.05, 0.0)
    plans.clock.advance(5.01)
    taken = plans.plan()
    taken.record(call_of(taken.next_step()), None, 0.05, 0.0)
    assert instance.pace is not None
    assert not instance.pace.after_refusals
    step = plans.plan(deadline_s=1.0).next_step()
    assert isinstance(step, GiveUp), step
