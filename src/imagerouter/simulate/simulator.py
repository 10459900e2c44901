"""The discrete-event simulator: the router's own routing plans, driven on a virtual clock.

Every job gets a real :class:`~imagerouter.routing.JobPlan` from the real
:class:`~imagerouter.router.Router` (its breakers, cooldowns, health scores, retry budget,
concurrency limits and learned request budgets), and is driven exactly as
:meth:`Router.generate <imagerouter.router.Router.generate>` drives it:

- ``Wait`` → the job wakes at ``until``;
- ``GiveUp`` → the job fails with its error;
- ``Call`` → the simulated provider account answers at some virtual time; the outcome is
  recorded with :meth:`JobPlan.record`; a success completes the job, an error that may not
  fail over fails it, any other error asks the plan again;
- a hedged model starts its next candidate (``hedge_step()``) when the first call is still out
  at the instance's p95, and the first success cancels the other call (:meth:`JobPlan.cancelled`)
  before it is recorded; a failure while the other call runs is recorded and waited past.

Time is a :class:`~imagerouter.clock.FakeClock` moved from event to event; the event queue is a
heap of ``(time, sequence, handler, object)``. Arrivals come from a traffic shape as a Poisson
process and are merged with the heap lazily. Nothing sleeps and nothing opens a socket.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from imagerouter.catalog import CatalogModel, ModelProvider
from imagerouter.clock import FakeClock
from imagerouter.errors import ConfigError, ImageRouterError, ProviderError
from imagerouter.generation import ImageRequest
from imagerouter.preferences import (
    RoutingPreferences,
    RoutingRejected,
    check_preferences,
    provider_names,
)
from imagerouter.resilience.breaker import BreakerTransition
from imagerouter.resilience.headers import RateLimitBudget
from imagerouter.router import Router
from imagerouter.routing import Call, GiveUp, JobPlan, Wait
from imagerouter.shapes import Shape, make_shape
from imagerouter.simulate.arrivals import JobMix, poisson_arrivals
from imagerouter.simulate.metrics import Metrics
from imagerouter.simulate.providers import Answer, ProviderAccount
from imagerouter.simulate.spec import SimulationSpec
from imagerouter.simulate.world import World
from mockproviders.engine import stable_seed

__all__ = ["START", "Progress", "Simulation"]

#: Where the virtual clock starts (monotonic seconds).
START = 1000.0
#: Loop iterations between progress reports.
_PROGRESS_EVERY = 1 << 16
#: Events between two collections of the young generations while the collector is paused.
_COLLECT_EVERY = 1 << 18

Progress = Callable[[float, int], None]


class _Job:
    """One job in flight: its plan, when it arrived, and its calls still out."""

    __slots__ = ("arrived", "credits", "finished", "hedge", "pending", "plan")

    def __init__(self, plan: JobPlan, arrived: float, credits: int, hedge: bool) -> None:
        self.plan = plan
        self.arrived = arrived
        self.credits = credits
        self.hedge = hedge
        self.finished = False
        self.pending: list[_Call] = []


class _Call:
    """One provider call of a job: its step, its account, and the answer it will get."""

    __slots__ = (
        "account",
        "at",
        "budget",
        "done",
        "error",
        "index",
        "job",
        "started",
        "started_at",
        "step",
    )

    def __init__(
        self,
        job: _Job,
        step: Call,
        account: ProviderAccount,
        index: int,
        started: float,
        started_at: float,
    ) -> None:
        self.job = job
        self.step = step
        self.account = account
        self.index = index
        self.started = started
        self.started_at = started_at
        self.done = False
        self.at = 0.0
        self.error: ProviderError | None = None
        self.budget: RateLimitBudget | None = None


class Simulation:
    """One run of a scenario under one policy: build it, :meth:`run` it, read its metrics.

    Args:
        spec: the scenario and policy (see :mod:`imagerouter.simulate.spec`).
        progress: called now and then with (fraction of the run's virtual time done, jobs).
    """

    def __init__(self, spec: SimulationSpec, *, progress: Progress | None = None) -> None:
        settings = spec.settings
        self.spec = spec
        self.clock = FakeClock(START)
        self._heap: list[tuple[float, int, Callable[[Any, float], None], Any]] = []
        self._seq = itertools.count()
        self._progress = progress
        self.duration_s = settings.hours * 3600.0
        self.world = World(spec, self.clock, self.schedule, self._reanswer, self._transition)
        self.router = self.world.router
        names = list(self.router.instances)
        self._index = {name: i for i, name in enumerate(names)}
        #: Per instance name: its metrics index and its provider account.
        self._targets = {name: (i, self.world.accounts[name]) for i, name in enumerate(names)}
        bucket_s = settings.bucket_s or max(1.0, self.duration_s / 288)
        self.metrics = Metrics(names, start=START, duration_s=self.duration_s, bucket_s=bucket_s)
        self.shape: Shape = make_shape(
            settings.shape, settings.peak_per_min / 60.0, self.duration_s, **settings.shape_params
        )
        catalog = self.router.catalog
        self._mix = JobMix(settings.models, settings.quality)
        self._models = [catalog.resolve(name) for name in self._mix.models]
        #: A video model's provider cost per job (its default video), by (model, provider, id).
        self._video_costs = {
            (model.name, entry.provider, entry.model): model.cost_usd(
                entry, model.resolve_request(ImageRequest(model=model.name, prompt="x")), 1
            )
            for model in self._models
            if model.kind == "video"
            for entry in model.providers
        }
        self._prices = [
            [
                model.price(ImageRequest(model=model.name, prompt="x", quality=tier))
                for tier in self._mix.tiers
            ]
            for model in self._models
        ]
        self._rng = random.Random(stable_seed(settings.seed, "jobs"))
        # A separate stream, so that a scenario without routing shares draws as it always did.
        self._routing_rng = random.Random(stable_seed(settings.seed, "routing"))
        self._routing = [(share.share, share.preferences) for share in settings.routing]
        for index, (_, prefs) in enumerate(self._routing):
            for model in self._models:
                _check_share(prefs, model, self.router, index)
        #: Jobs the API would have refused before arrival: their price is above the
        #: client's ``max_price_credits``.
        self.refused = 0
        self._arrival_rng = random.Random(stable_seed(settings.seed, "arrivals"))
        self.wall_s = 0.0
        self.events = 0
        # Bound once: they go on the event queue for every call and every wait.
        self._on_answered = self._answered
        self._on_wake = self._drive
        self._on_hedge = self._hedge

    # ------------------------------------------------------------------ the event loop

    def schedule(self, at: float, handler: Callable[[Any, float], None], obj: Any) -> None:
        """Run ``handler(obj, at)`` when the clock reaches ``at``."""
        heapq.heappush(self._heap, (at, next(self._seq), handler, obj))

    def run(self) -> Metrics:
        """Run every arrival of the shape, then every job still in flight, to the end.

        The router logs each breaker transition as a warning; during the run those records are
        held back (the report has every transition), then the logger is as it was.

        Python's cyclic garbage collector is paused for the run, and only its young generations
        are collected, every ``_COLLECT_EVERY`` events: a job's objects are freed by reference
        counting as it ends (a 600,000-job launch-week leaves a few dozen objects in cycles),
        while the collector's passes over the jobs in flight took 3.8 % of a 3-hour launch-week
        (1.40 of 36.7 s, timed by ``gc.callbacks``; 0.04 s paused).
        """
        router_log = logging.getLogger("imagerouter.router")
        level = router_log.level
        router_log.setLevel(logging.ERROR)
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()
            router_log.setLevel(level)

    def _run(self) -> Metrics:
        began = time.perf_counter()
        heap, pop, clock = self._heap, heapq.heappop, self.clock
        arrivals = poisson_arrivals(self.shape, self._arrival_rng, start=START)
        inf = float("inf")
        next_arrival = next(arrivals, inf)
        arrive, progress, advance_to = self._arrive, self._progress, clock.advance_to
        events = 0
        now = clock.now()  # only this loop moves the clock
        while True:
            events += 1
            if heap and heap[0][0] <= next_arrival:
                at, _, handler, obj = pop(heap)
                if at > now:
                    advance_to(at)
                    now = at
                handler(obj, at)
            elif next_arrival != inf:
                if next_arrival > now:
                    advance_to(next_arrival)
                    now = next_arrival
                arrive(next_arrival)
                next_arrival = next(arrivals, inf)
            else:
                break
            if not events % _PROGRESS_EVERY:
                if progress is not None:
                    progress(min(1.0, (now - START) / self.duration_s), self.metrics.jobs_arrived)
                if not events % _COLLECT_EVERY:
                    gc.collect(1)
        if progress is not None:
            progress(1.0, self.metrics.jobs_arrived)
        self.events = events
        self.wall_s = time.perf_counter() - began
        return self.metrics

    # ------------------------------------------------------------------ jobs

    def _arrive(self, at: float) -> None:
        m, tier = self._mix.draw(self._rng)
        model = self._models[m]
        credits = self._prices[m][tier]
        if self._routing:
            prefs = self._preferences()
            cap = None if prefs is None else prefs.max_price_credits
            if cap is not None and credits > cap:
                self.refused += 1
                return
            plan = self.router.plan(model, routing=prefs)
        else:
            plan = self.router.plan(model)
        job = _Job(plan, at, credits, model.hedge)
        self.metrics.arrival(at)
        step = job.plan.next_step()  # self._drive(job, at), written out: once per job
        if type(step) is Call:
            self._start(job, step, at, True)
        else:
            self._wait_or_fail(job, step, at)

    def _preferences(self) -> RoutingPreferences | None:
        """The routing preferences of the next job's client: one share's, or None."""
        roll = self._routing_rng.random()
        for share, prefs in self._routing:
            if roll < share:
                return prefs
            roll -= share
        return None

    def _drive(self, job: _Job, at: float) -> None:
        """Ask the plan what to do now, as ``Router.generate`` does in its loop."""
        step = job.plan.next_step()
        if type(step) is Call:
            self._start(job, step, at, True)
        else:
            self._wait_or_fail(job, step, at)

    def _wait_or_fail(self, job: _Job, step: Wait | GiveUp, at: float) -> None:
        if type(step) is Wait:
            self.metrics.waits += 1
            heapq.heappush(self._heap, (step.until, next(self._seq), self._on_wake, job))
        else:
            self._fail(job, step.error, at)  # type: ignore[union-attr]

    def _start(self, job: _Job, step: Call, at: float, primary: bool) -> None:
        """Send ``step`` to its provider account; the answer is scheduled."""
        index, account = self._targets[step.candidate.instance.name]
        call = _Call(job, step, account, index, at, self.clock.wall())
        job.pending.append(call)
        self.metrics.call_started(index, at)
        video = job.plan.model.kind == "video"
        call.at, call.error, call.budget = account.call(call, step.deadline, video)
        heapq.heappush(self._heap, (call.at, next(self._seq), self._on_answered, call))
        if primary and job.hedge:
            p95 = step.candidate.instance.health.p95()
            if p95 is not None:
                self.schedule(at + p95, self._on_hedge, call)

    def _reanswer(self, call: _Call, answer: Answer) -> None:
        """A queued generation got a slot: the call's answer comes earlier than promised."""
        if not call.done:
            call.at, call.error, call.budget = answer
            self.schedule(call.at, self._answered, call)

    def _hedge(self, first: _Call, at: float) -> None:
        """The first call is still out at its instance's p95: start the next candidate too."""
        if first.done or first.job.finished:
            return
        second = first.job.plan.hedge_step()
        if second is not None:
            self._start(first.job, second, at, False)

    def _answered(self, call: _Call, at: float) -> None:
        """A call's answer arrives: record it and go on, as ``Router._settle`` does."""
        if call.done or call.at != at:
            return  # cancelled, or superseded by an earlier answer
        call.done = True
        job = call.job
        job.pending.remove(call)
        if call.account.capped:
            call.account.finished(call, at)
        error = call.error
        plan = job.plan
        if error is not None:
            self.metrics.call_failed(call.index, at, error.error_class)
            if job.pending:  # hedged: the other call is still out; wait for it
                plan.record(call.step, error, at - call.started, call.started_at, call.budget)
                if not error.failover:
                    self._cancel_pending(job, at)
                    self._fail(job, error, at)
                return
        elif job.pending:  # a hedge won: the loser is cancelled before the win is recorded
            self._cancel_pending(job, at)
        plan.record(call.step, error, at - call.started, call.started_at, call.budget)
        if error is None:
            job.finished = True
            self.metrics.job_completed(
                call.index,
                at,
                job.arrived,
                at - call.started,
                job.credits,
                self._cost(plan.model, call.step.candidate.entry),
                plan.attempts,
            )
        elif not error.failover:
            self._fail(job, error, at)
        else:
            self._drive(job, at)

    def _cost(self, model: CatalogModel, entry: ModelProvider) -> float | None:
        """What one call of ``entry`` costs: its price per image, or a video model's default
        video (its seconds at the per-second price)."""
        if model.kind == "image":
            return entry.cost_usd
        return self._video_costs.get((model.name, entry.provider, entry.model))

    def _cancel_pending(self, job: _Job, at: float) -> None:
        for other in job.pending:
            other.done = True
            job.plan.cancelled(other.step, at - other.started, other.started_at)
            if other.account.capped:
                other.account.finished(other, at)
            entry = other.step.candidate.entry
            self.metrics.call_cancelled(other.index, self._cost(job.plan.model, entry))
        job.pending.clear()

    def _fail(self, job: _Job, error: ImageRouterError, at: float) -> None:
        job.finished = True
        self.metrics.job_failed(at, error, job.credits, job.plan.attempts)

    def _transition(self, transition: BreakerTransition) -> None:
        self.metrics.transition(transition)


def _check_share(
    prefs: RoutingPreferences, model: CatalogModel, router: Router, index: int
) -> None:
    """A routing share must name only providers the router knows and leave every mixed model
    a provider (its price cap is applied per job)."""
    known = provider_names(router.catalog, router.instances)
    uncapped = prefs.model_copy(update={"max_price_credits": None})
    try:
        check_preferences(uncapped, model, router.candidates_for(model), 0, known)
    except RoutingRejected as exc:
        raise ConfigError(str(exc), field=f"simulation.routing[{index}].preferences") from None
