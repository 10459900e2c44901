"""Deciding, attempt by attempt, where one job goes: a pure, synchronous plan.

:class:`JobPlan` never sleeps and never does I/O. Asked for its :meth:`~JobPlan.next_step`, it
answers :class:`Call` (this provider, by this deadline), :class:`Wait` (until then) or
:class:`GiveUp` (with the error that ends the job); told the outcome of a call it feeds the
provider's breaker, health, cooldown, concurrency limit and budget. The async router
(:func:`run_job`) and the virtual-time simulator drive the very same plan.

The rules:

- Candidates are the model's providers ordered by its policy, with those this job has already
  seen fail moved to the back: a retryable failure *fails over* while another provider is
  available and *retries* (after a full-jitter backoff) only when none is.
- A candidate is skipped while its breaker is open, its Retry-After cooldown runs, its
  x-ratelimit budget is spent, the pace its 429s taught it has no start free, or its
  concurrency is full; each skip is recorded with its reason.
- When nothing is callable the job waits for the earliest candidate to be back (never earlier
  than a Retry-After, never past the deadline, within the single and total wait caps); when every
  breaker is open it sends one probe to the provider that failed least recently (panic mode).
- A Retry-After longer than the job's remaining time excludes that provider for this job.
- A failover (a call into an instance this job has not failed on) is admitted by that
  instance's own state alone and costs no budget: it adds no load to the provider that failed.
  A retry (a call into an instance this job already failed on) spends that instance's retry
  budget, so an outage never multiplies traffic on the provider that is down; a retry after a
  429 is paced by the Retry-After cooldown instead, which no job can jump.
- A job that a storm's pace alone would fail (a key answering 429 to everything: the pace is
  one probe a window, no rate it was seen to take) calls the key once past it; a pace learned
  among calls taken is never jumped.
- A timeout of a call the job's own deadline cut shorter than the provider's recent calls
  took is not the provider's failure (its breaker and health do not count it).
- Content rejections and invalid requests end the job at once; auth failures exclude the
  provider for the job; everything ends at the deadline, and retries stop once the job has
  made ``max_attempts`` calls (a provider it has not tried may still take it).
- So a job gives up only when no candidate it has not tried is callable: one that gave up
  while one was would be *failed while servable*, a defect that :meth:`JobPlan.servable`
  measures at every give-up and the error reports.

One concept that reads better whole (over 400 lines): the plan's rules, top to bottom.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from imagerouter.catalog import CatalogModel, ModelProvider
from imagerouter.clock import Clock
from imagerouter.config import RouterSettings
from imagerouter.errors import (
    ImageRouterError,
    NoProviderAvailable,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.generation import Attempt, AttemptEvent
from imagerouter.instances import PACED_BY_429S, ProviderInstance, Unavailable
from imagerouter.resilience.backoff import full_jitter
from imagerouter.resilience.headers import RateLimitBudget
from imagerouter.resilience.pace import RatePace
from imagerouter.resilience.token_bucket import TokenBucket

__all__ = ["Call", "Candidate", "GiveUp", "JobPlan", "Wait", "order_candidates"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One provider instance able to serve the job's model, with the catalog entry for it."""

    instance: ProviderInstance
    entry: ModelProvider


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``candidate`` now; the attempt must end by ``deadline`` (monotonic)."""

    candidate: Candidate
    deadline: float
    #: Why this provider, now: first choice, failover, retry, panic probe or hedge.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to call yet: ask again at ``until`` (monotonic)."""

    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The job is over without a result; ``error`` says why (attempts attached)."""

    error: ImageRouterError


Step = Call | Wait | GiveUp

_BUDGET_SPENT = Unavailable("retry_budget", "retry budget spent: no more retries into it now")
_SERVABLE_REASON = "servable: callable when the job gave up"
_JUMP_REASON = "past its pace: waiting for the next paced start would end the job"
#: The reason of a job's first call, per routing policy (made once, not per job).
_FIRST_CHOICE: Mapping[str, str] = MappingProxyType(
    {p: f"first available in {p} order" for p in ("priority", "weighted", "latency", "cost")}
)


def order_candidates(
    policy: str, candidates: Sequence[Candidate], rng: random.Random
) -> list[Candidate]:
    """The candidates in the order ``policy`` prefers them.

    ``priority``: catalog order. ``weighted``: a weighted shuffle by health × weight.
    ``latency``: lowest recent p50 first (unknown latency last). ``cost``: cheapest first.
    """
    if policy == "priority" or len(candidates) < 2:
        return list(candidates)
    if policy == "weighted":
        # Efraimidis–Spirakis: sorting by u^(1/w) gives a weighted random permutation.
        def key(c: Candidate) -> float:
            weight = max(1e-6, c.instance.health.score * c.instance.weight * c.entry.weight)
            return -(rng.random() ** (1.0 / weight))

        return sorted(candidates, key=key)
    if policy == "latency":
        return sorted(candidates, key=lambda c: c.instance.health.p50() or float("inf"))
    if policy == "cost":
        return sorted(
            candidates,
            key=lambda c: float("inf") if c.entry.cost_usd is None else c.entry.cost_usd,
        )
    raise ValueError(f"unknown routing policy {policy!r}")


@dataclass(slots=True)
class JobPlan:
    """The routing decisions of one job, on an injected clock."""

    model: CatalogModel
    candidates: list[Candidate]
    deadline: float
    settings: RouterSettings
    clock: Clock
    rng: random.Random
    attempts: list[Attempt] = field(default_factory=list)
    calls: int = 0
    waited: float = 0.0
    last_error: ProviderError | None = None
    #: Instances with a call of this job in flight (two while hedging).
    in_flight: set[str] = field(default_factory=set)
    _failures: dict[str, int] = field(default_factory=dict)
    _excluded: set[str] = field(default_factory=set)
    #: Instances whose last failure for this job was a 429: retries there wait out the
    #: cooldown instead of spending the retry budget.
    _paced: set[str] = field(default_factory=set)
    _noted: set[tuple[str, str]] = field(default_factory=set)
    #: Instances this job called past a storm's pace (once each: :meth:`_jump_pace`).
    _jumped: set[str] = field(default_factory=set)
    _backed_off: bool = False
    #: Told of every attempt as it is added (metrics, logs); None when nobody listens.
    on_attempt: Callable[[AttemptEvent], None] | None = None
    #: Keep ``candidates`` in the order given (the client's routing preferences fixed it)
    #: instead of re-ordering them by the model's policy.
    fixed_order: bool = False

    def _add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        # Falsy when nobody listens (Listeners with none added): no event to build.
        if self.on_attempt:
            self.on_attempt(AttemptEvent(self.model.name, attempt))

    def note_skip(self, instance_name: str, reason: str) -> None:
        """Record a candidate left out before the first step (the client's preferences)."""
        self._add(Attempt(instance_name, "skipped", started_at=self.clock.wall(), reason=reason))

    # --- deciding -------------------------------------------------------------------------------

    def next_step(self) -> Step:
        """What to do now. A returned :class:`Call` holds a reserved breaker permit and
        concurrency slot: report it with :meth:`record` (or :meth:`release` if not made)."""
        step = self._choose(False)
        assert step is not None
        return step

    def hedge_step(self) -> Call | None:
        """A second call, to another provider, while one is still in flight; None if there
        is none to make right now (a hedge never waits and never ends the job)."""
        step = self._choose(hedge=True)
        return step if isinstance(step, Call) else None

    def _choose(self, hedge: bool) -> Step | None:
        now, settings = self.clock.now(), self.settings
        if now >= self.deadline:
            return self._give_up("deadline", "deadline passed")
        if not self.candidates:
            return self._give_up("no_provider", "no enabled provider serves it")
        policy = self.model.policy
        ordered = (
            # The client's preferences fixed the order; priority's answer is the list as it is.
            list(self.candidates)
            if self.fixed_order or policy == "priority"
            else order_candidates(policy, self.candidates, self.rng)
        )
        if self._failures:  # with no failures yet every key is 0 and the stable sort a no-op
            ordered.sort(key=lambda c: self._failures.get(c.instance.name, 0))  # stable
        # max_attempts caps retries only: a provider this job has not tried may always take it.
        may_retry = not hedge and self.calls < settings.max_attempts
        chosen, ready_at, all_open, spent = None, None, True, False
        pace_held: Candidate | None = None
        for candidate in ordered:
            instance = candidate.instance
            name = instance.name
            if name in self._excluded or name in self.in_flight:
                continue
            # A hedge is a first call into another provider, never a retry.
            if name in self._failures and not (may_retry and self._retry_allowed(instance)):
                spent, all_open = True, False
                continue
            why = instance.unavailable(now) or instance.acquire()
            if why is None:
                chosen = candidate
                break
            self._skip(instance, why)
            if (
                pace_held is None
                and why.reason == PACED_BY_429S
                and name not in self._jumped
                and instance.pace is not None
                and instance.pace.after_refusals
            ):
                pace_held = candidate  # held by a storm's pace, which knows no rate
            all_open = all_open and why.kind == "breaker_open"
            # Half-open without a free permit, or concurrency full: look again shortly.
            back = why.ready_at if why.ready_at is not None else now + settings.recheck_s
            ready_at = back if ready_at is None else min(ready_at, back)
        if hedge and chosen is None:
            return None
        panic = chosen is None and all_open
        if panic:
            chosen, forced_at = self._panic_probe(may_retry)
            if chosen is None and forced_at is not None:
                # The next panic probe may come before any breaker's own cooldown ends: wait
                # for it rather than give up while a provider could still be found healthy.
                ready_at = forced_at if ready_at is None else min(ready_at, forced_at)
        if (
            chosen is None
            and pace_held is not None
            and not self._pace_wait_fits(pace_held, ready_at, now)
        ):
            chosen = self._jump_pace(pace_held, now)
        if chosen is None:
            if ready_at is None and spent and not may_retry:
                return self._give_up("max_attempts", f"{settings.max_attempts} attempts made")
            if ready_at is None and spent:
                return self._give_up("retry_budget", "retry budget exhausted")
            return self._wait_until(ready_at)
        name = chosen.instance.name
        failures = self._failures.get(name, 0)
        if failures and not self._backed_off:
            # Nothing else was callable: back off before retrying the provider that failed.
            self.release(chosen)
            delay = full_jitter(failures, settings.backoff_base_s, settings.backoff_cap_s, self.rng)
            self._backed_off = True
            return self._wait_until(now + delay, reason="backoff")
        self._backed_off = False
        if hedge:
            reason = "hedge: the call in flight is slower than its provider's p95"
        elif name in self._jumped and chosen is pace_held:
            reason = _JUMP_REASON
        elif panic:
            reason = "panic probe: every breaker open"
        elif failures:
            reason = f"retry #{failures} after backoff: no other provider callable"
        elif self.last_error is not None:
            reason = f"failover after {self.last_error.error_class} from {self.last_error.provider}"
        else:
            reason = _FIRST_CHOICE.get(policy) or f"first available in {policy} order"
        budget = chosen.instance.retry_budget
        if not failures:
            budget.record_first_attempt()
        elif name not in self._paced:
            budget.try_spend()
        self.calls += 1
        self.in_flight.add(name)
        return Call(chosen, min(self.deadline, now + settings.attempt_timeout_s), reason)

    def _retry_allowed(self, instance: ProviderInstance) -> bool:
        """May this job call again an instance it failed on? After a 429 the cooldown paces
        it; after any other failure the instance's retry budget must have room."""
        if instance.name in self._paced or instance.retry_budget.can_spend():
            return True
        if (instance.name, "retry_budget") not in self._noted:
            instance.retry_budget.reject()
            self._skip(instance, _BUDGET_SPENT)
        return False

    def _give_up(self, code: str, reason: str) -> GiveUp:
        if self.last_error is not None and reason.startswith("every candidate"):
            reason = f"{reason} (last: {self.last_error.error_class})"
        servable = self.servable()
        for name in servable:
            self._add(
                Attempt(name, "skipped", started_at=self.clock.wall(), reason=_SERVABLE_REASON)
            )
        tried = ", ".join(
            f"{a.provider}: {a.error_class or a.reason}"
            for a in self.attempts
            if a.outcome in ("error", "canceled")
            or (a.outcome == "skipped" and a.reason != _SERVABLE_REASON)
        )
        message = f"no provider could serve {self.model.name}: {reason}"
        return GiveUp(
            NoProviderAvailable(
                f"{message} ({tried})" if tried else message,
                self.attempts,
                reason=code,
                servable=servable,
            )
        )

    def servable(self) -> list[str]:
        """The candidates that could serve this job right now: time is left, the job has not
        tried them, and their own state (breaker, cooldown, x-ratelimit budget, concurrency)
        would admit a call. A job that gives up while this is not empty failed while
        servable: the plan never does that by design, and this is how it is measured."""
        now = self.clock.now()
        if now >= self.deadline:
            return []
        return [
            c.instance.name
            for c in self.candidates
            if c.instance.name not in self._excluded
            and c.instance.name not in self.in_flight
            and c.instance.name not in self._failures
            and c.instance.admits(now)
        ]

    def _wait_fits(self, until: float | None, now: float) -> bool:
        """May this job wait until ``until`` (within its deadline and its wait caps)?"""
        if until is None:
            return False
        settings = self.settings
        delay = max(0.0, until - now) + settings.wake_margin_s
        return (
            now + delay < self.deadline
            and delay <= settings.max_wait_s
            and self.waited + delay <= settings.max_total_wait_s
        )

    def _pace_wait_fits(self, candidate: Candidate, until: float | None, now: float) -> bool:
        """May this job wait until ``until`` and still leave the paced key the time its calls
        usually take (their p50)? Waking with less, its call would be cut short."""
        if until is None:
            return False
        return self._wait_fits(until + (candidate.instance.health.p50() or 0.0), now)

    def _jump_pace(self, candidate: Candidate, now: float) -> Candidate | None:
        """Waiting for the next start of a storm's pace (:attr:`RatePace.after_refusals`)
        would end this job, or leave it less time than the key's calls take: call the key once
        past its pace, if nothing else holds it (a window, a budget, its breaker, its
        concurrency). A storm's pace is one probe a window, not a rate the key was seen to
        take: a job never fails on it without trying the key once. A 429 then gives the key a
        window like any other, and the job's next give-up is final. A pace learned from 429s
        among calls taken (a key at its limit) is never jumped: there the jumps would be the
        stampede the pace exists to prevent."""
        instance = candidate.instance
        if instance.unavailable(now, paced=False) or instance.acquire(paced=False):
            return None
        self._jumped.add(instance.name)
        return candidate

    def _wait_until(self, until: float | None, reason: str = "waiting for a provider") -> Step:
        settings, now = self.settings, self.clock.now()
        if until is None:
            if self.last_error is not None:
                return self._give_up("every_candidate_failed", "every candidate failed")
            return self._give_up("every_candidate_unavailable", "every candidate is unavailable")
        if not self._wait_fits(until, now):
            return self._give_up(
                "wait_cap", "no candidate is back before the deadline or the wait cap"
            )
        delay = max(0.0, until - now) + settings.wake_margin_s
        self.waited += delay
        return Wait(now + delay, reason)

    def _skip(self, instance: ProviderInstance, why: Unavailable) -> None:
        if (instance.name, why.kind) not in self._noted:
            self._noted.add((instance.name, why.kind))
            self._add(
                Attempt(instance.name, "skipped", started_at=self.clock.wall(), reason=why.reason)
            )

    def _panic_probe(self, may_retry: bool) -> tuple[Candidate | None, float | None]:
        """Every candidate's breaker is open: probe the one that failed least recently. Returns
        the candidate to probe, or None and when its breaker will allow the next forced probe
        (one per ``open_base_s``; None if no candidate may be probed at all)."""
        open_ones = [
            c
            for c in self.candidates
            if c.instance.name not in self._excluded
            and (
                c.instance.name not in self._failures
                or (may_retry and self._retry_allowed(c.instance))
            )
        ]
        if not open_ones:
            return None, None
        oldest = min(open_ones, key=lambda c: c.instance.breaker.last_failure_at or 0.0)
        if not oldest.instance.breaker.force_probe():
            return None, oldest.instance.breaker.next_forced_probe_at
        self._add(
            Attempt(
                oldest.instance.name,
                "skipped",
                started_at=self.clock.wall(),
                reason="panic: every breaker open; probing the least recently failed",
            )
        )
        return oldest, None

    # --- learning from outcomes -----------------------------------------------------------------

    def release(self, candidate: Candidate) -> None:
        """Give back the permit and slot of a call that was not made."""
        instance = candidate.instance
        self.in_flight.discard(instance.name)
        instance.breaker.record_ignored()
        if instance.limit is not None:
            instance.limit.release(0.0, dropped=False)

    def record(
        self,
        call: Call,
        error: ProviderError | None,
        latency: float,
        started_at: float,
        budget: RateLimitBudget | None = None,
    ) -> Attempt:
        """Feed a call's outcome to the provider's state and the job's; returns its attempt.

        After an error, the job goes on (ask :meth:`next_step`) unless the error may not fail
        over, in which case the caller raises it.
        """
        instance = call.candidate.instance
        name = instance.name
        self.in_flight.discard(name)
        attempt = Attempt(
            name,
            "ok" if error is None else "error",
            started_at=started_at,
            latency_ms=round(latency * 1000, 3),
            reason=call.reason,
        )
        if error is not None:
            error.provider = error.provider or name
            attempt.error_class, attempt.error = error.error_class, error.message[:300]
            attempt.status, attempt.retry_after = error.status, error.retry_after
        self.attempts.append(attempt)  # self._add(attempt), written out: once per call
        if self.on_attempt:
            self.on_attempt(AttemptEvent(self.model.name, attempt))
        if budget is not None:
            _learn_budget(instance, budget)
        if error is None:
            instance.breaker.record_success(latency)
            instance.health.record(True, latency)
            if instance.limit is not None:
                instance.limit.release(latency, dropped=False)
            if instance.pace is not None:
                _paced_taken(instance)
            return attempt
        cut_short = isinstance(error, ProviderTimeout) and self._cut_short(call, latency)
        if error.counts_as_failure and not cut_short:
            instance.breaker.record_failure(latency)
            instance.health.record(False, latency)
        else:
            instance.breaker.record_ignored()
        if instance.limit is not None:
            dropped = not cut_short and isinstance(error, RateLimited | ProviderUnavailable)
            instance.limit.release(latency, dropped=dropped)
        if instance.pace is not None and not isinstance(error, RateLimited):
            _paced_taken(instance)  # the key's limit let it through: only a 429 says otherwise
        if isinstance(error, RateLimited):
            if error.retry_after is not None:
                wait = min(error.retry_after, self.settings.max_cooldown_s)
                instance.cooldowns.start(name, wait, "retry-after")
                if error.retry_after >= self.deadline - self.clock.now():
                    self._excluded.add(name)  # it will not be back in time for this job
            else:
                instance.cooldowns.start_learned(name)
            if instance.budget is None and self.settings.pace.enabled:
                self._learn_pace(instance, error.retry_after, latency)
            self._backed_off = True  # the cooldown is the backoff: the provider said when
        if isinstance(error, RateLimited):
            self._paced.add(name)
        else:
            self._paced.discard(name)
        self.last_error = error
        self._failures[name] = self._failures.get(name, 0) + 1
        if not error.retryable:
            self._excluded.add(name)
        return attempt

    def _cut_short(self, call: Call, latency: float) -> bool:
        """Did this job's own deadline end the call before the provider could be expected to
        answer? Its time left, not the attempt timeout, bounded the call, and that was less
        than the provider's recent successful calls took (their p95). Such a timeout says
        nothing of the provider: counted as a failure, jobs near their deadlines (those that
        waited longest behind a cooldown or a pace) would trip the breaker of a provider that
        answers every call it is given time for."""
        if call.deadline < self.deadline:
            return False  # the attempt timeout bounded it: the provider had its full time
        needed = call.candidate.instance.health.p95()
        return needed is not None and latency < needed

    def _learn_pace(
        self, instance: ProviderInstance, retry_after: float | None, latency: float
    ) -> None:
        """A 429 from a key that sends no budget headers: pace it, or slow its pace."""
        if instance.pace is None:
            first_wait = retry_after if retry_after else instance.cooldowns.remaining(instance.name)
            instance.pace = RatePace(
                self.clock, self.settings.pace, first_wait or None, instance.health.success_rate()
            )
        else:
            instance.pace.rate_limited(self.clock.now() - latency, retry_after)

    def cancelled(self, call: Call, latency: float, started_at: float) -> Attempt:
        """A call abandoned in flight (it lost a hedge, or the job was cancelled)."""
        self.release(call.candidate)
        attempt = Attempt(
            call.candidate.instance.name,
            "canceled",
            started_at=started_at,
            latency_ms=round(latency * 1000, 3),
            reason="abandoned in flight",
        )
        self._add(attempt)
        return attempt


def _paced_taken(instance: ProviderInstance) -> None:
    """A paced key took a call (anything but a 429: a 503 or a timeout is another matter, its
    breaker's): pace it faster, or stop pacing it after a quiet spell or a storm."""
    pace = instance.pace
    assert pace is not None
    if pace.after_refusals or pace.expired(instance.clock.now()):
        instance.pace = None
    else:
        pace.succeeded()


def _learn_budget(instance: ProviderInstance, budget: RateLimitBudget) -> None:
    """Pace by the provider's announced request budget (OpenAI's x-ratelimit-* headers)."""
    if instance.budget is None:
        instance.pace = None  # the provider says its budget: no need to guess it from 429s
        limit = max(budget.limit, 1)
        instance.budget = TokenBucket(limit / 60.0, limit, instance.clock)
    instance.budget.set_from_headers(budget.limit, budget.remaining, budget.reset_s)
