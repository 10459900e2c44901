"""Running one job: pick a provider for each attempt, call it, and decide what happens next.

For each attempt the candidates are the model's providers, ordered by the model's policy, with
the ones this job has already seen fail moved to the back (so a retryable failure *fails over*
while another provider is available, and *retries* only when none is). A candidate is skipped
while its breaker is open, its Retry-After cooldown runs, its x-ratelimit budget is spent or its
concurrency is full; every skip is recorded with its reason. When nothing is callable the job
sleeps until the earliest candidate is back (never earlier than a Retry-After, never past the
deadline, and within the job's wait caps), or, when every breaker is open, sends one probe to
the provider that failed least recently (panic mode, as Envoy does).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagerouter.backoff import full_jitter
from imagerouter.catalog import CatalogModel, ModelProvider
from imagerouter.errors import (
    AuthFailed,
    NoProviderAvailable,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.instances import ProviderInstance, Unavailable
from imagerouter.limits import TokenBucket
from imagerouter.models import Attempt, ImageRequest, ImageResult
from imagerouter.provider import CallContext

if TYPE_CHECKING:
    from imagerouter.router import Router

__all__ = ["Candidate", "order_candidates", "run_job"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One provider instance able to serve the job's model, with the catalog entry for it."""

    instance: ProviderInstance
    entry: ModelProvider


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
        # Efraimidis–Spirakis: sort by u^(1/w), a weighted random permutation in one pass.
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


@dataclass
class _JobRun:
    """The state of one job's attempts."""

    router: Router
    request: ImageRequest
    model: CatalogModel
    candidates: list[Candidate]
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)
    noted_skips: set[tuple[str, str]] = field(default_factory=set)
    calls: int = 0
    waited: float = 0.0
    last_error: ProviderError | None = None

    def skip(self, instance: ProviderInstance, why: Unavailable) -> None:
        if (instance.name, why.kind) not in self.noted_skips:
            self.noted_skips.add((instance.name, why.kind))
            self.attempts.append(
                Attempt(
                    instance.name, "skipped", started_at=self.router.clock.wall(), reason=why.reason
                )
            )

    def fail(self, reason: str) -> NoProviderAvailable:
        tried = ", ".join(
            f"{a.provider}: {a.error_class or a.reason}" for a in self.attempts if a.outcome != "ok"
        )
        message = f"no provider could serve {self.model.name}: {reason}"
        return NoProviderAvailable(f"{message} ({tried})" if tried else message, self.attempts)


async def run_job(router: Router, request: ImageRequest, deadline_s: float) -> ImageResult:
    """Run ``request`` to a result, or raise the error that ended it (with every attempt)."""
    model = router.catalog.resolve(request.model)
    job = _JobRun(
        router, request, model, router.candidates_for(model), router.clock.now() + deadline_s
    )
    if not job.candidates:
        raise job.fail("no enabled provider serves it")
    try:
        return await _attempt_until_done(job)
    except ProviderError as exc:
        exc.attempts = job.attempts
        raise


async def _attempt_until_done(job: _JobRun) -> ImageResult:
    router, settings, clock = job.router, job.router.settings.router, job.router.clock
    while True:
        now = clock.now()
        if now >= job.deadline:
            raise job.fail("deadline passed")
        if job.calls >= settings.max_attempts:
            raise job.fail(f"{settings.max_attempts} attempts made")
        ordered = order_candidates(job.model.policy, job.candidates, router.rng)
        ordered.sort(key=lambda c: job.failures.get(c.instance.name, 0))  # stable: keeps policy
        chosen, ready_at, all_open = None, None, True
        for candidate in ordered:
            instance = candidate.instance
            if instance.name in job.excluded:
                continue
            why = instance.unavailable(now) or instance.acquire()
            if why is None:
                chosen = candidate
                break
            job.skip(instance, why)
            all_open = all_open and why.kind == "breaker_open"
            # Half-open without a free permit, or concurrency full: look again shortly.
            back_at = why.ready_at if why.ready_at is not None else now + settings.recheck_s
            ready_at = back_at if ready_at is None else min(ready_at, back_at)
        if chosen is None and all_open:
            chosen = _panic_probe(job)
        if chosen is None:
            if not await _wait_for(job, ready_at):
                raise job.fail(_why_nothing_left(job))
            continue
        retry = job.calls > 0
        if retry and not _may_retry(job):
            _release_unused(chosen.instance)
            raise job.fail("retry budget exhausted")
        result = await _call(job, chosen, retry)
        if result is not None:
            return result


def _panic_probe(job: _JobRun) -> Candidate | None:
    """Every candidate's breaker is open: probe the one that failed least recently."""
    open_ones = [c for c in job.candidates if c.instance.name not in job.excluded]
    if not open_ones:
        return None
    oldest = min(open_ones, key=lambda c: c.instance.breaker.last_failure_at or 0.0)
    if not oldest.instance.breaker.force_probe():
        return None
    job.attempts.append(
        Attempt(
            oldest.instance.name,
            "skipped",
            started_at=job.router.clock.wall(),
            reason="panic: every breaker open; probing the least recently failed",
        )
    )
    return oldest


def _why_nothing_left(job: _JobRun) -> str:
    if job.last_error is not None:
        return f"every candidate failed (last: {job.last_error.error_class})"
    return "every candidate is unavailable"


def _may_retry(job: _JobRun) -> bool:
    """Retries after a rate limit are paced by cooldowns; other retries draw on the budget."""
    if isinstance(job.last_error, RateLimited):
        return True
    return job.router.retry_budget.try_spend()


def _release_unused(instance: ProviderInstance) -> None:
    instance.breaker.record_ignored()
    if instance.limit is not None:
        instance.limit.release(0.0, dropped=False)


async def _wait_for(job: _JobRun, ready_at: float | None) -> bool:
    """Sleep until ``ready_at`` if the job's deadline and wait caps allow; False if not."""
    settings, clock = job.router.settings.router, job.router.clock
    if ready_at is None:
        return False
    delay = max(0.0, ready_at - clock.now()) + settings.wake_margin_s
    if (
        clock.now() + delay >= job.deadline
        or delay > settings.max_wait_s
        or job.waited + delay > settings.max_total_wait_s
    ):
        return False
    job.waited += delay
    await asyncio.sleep(delay)
    return True


async def _call(job: _JobRun, candidate: Candidate, retry: bool) -> ImageResult | None:
    """Make one attempt; return the result, or None to go round again (raise to stop)."""
    router, clock = job.router, job.router.clock
    instance, settings = candidate.instance, router.settings.router
    name = instance.name
    if retry and job.failures.get(name):
        # Retrying a provider this job already saw fail (nothing else was callable): back off.
        delay = full_jitter(
            job.failures[name], settings.backoff_base_s, settings.backoff_cap_s, router.rng
        )
        if clock.now() + delay >= job.deadline or job.waited + delay > settings.max_total_wait_s:
            _release_unused(instance)
            raise job.fail("no time left to back off")
        job.waited += delay
        await asyncio.sleep(delay)
    elif not retry:
        router.retry_budget.record_first_attempt()
    job.calls += 1
    ctx = CallContext(
        router.session,
        candidate.entry.model,
        min(job.deadline, clock.now() + settings.attempt_timeout_s),
        clock,
    )
    started, wall = clock.now(), clock.wall()
    try:
        output = await instance.provider.generate(job.request, ctx)
    except ProviderError as exc:
        error: ProviderError | None = exc
    except (asyncio.CancelledError, Exception):
        _release_unused(instance)
        raise
    else:
        error = None
    latency = clock.now() - started
    if ctx.budget is not None:
        _learn_budget(instance, ctx)
    attempt = Attempt(
        name,
        "ok" if error is None else "error",
        started_at=wall,
        latency_ms=round(latency * 1000, 3),
    )
    job.attempts.append(attempt)
    if error is None:
        _record_success(instance, latency)
        return ImageResult(
            model=job.model.name,
            provider=name,
            provider_model=candidate.entry.model,
            images=output.images,
            provider_request_id=output.provider_request_id,
            metadata=dict(job.request.metadata),
            attempts=[a.as_dict() for a in job.attempts],
        )
    error.provider = error.provider or name
    attempt.error_class, attempt.error = error.error_class, error.message[:300]
    attempt.status, attempt.retry_after = error.status, error.retry_after
    _record_failure(router, instance, error, latency)
    job.last_error = error
    job.failures[name] = job.failures.get(name, 0) + 1
    if not error.failover:
        raise error
    if not error.retryable or isinstance(error, AuthFailed):
        job.excluded.add(name)
    if isinstance(error, RateLimited) and error.retry_after is not None:
        remaining = job.deadline - clock.now()
        if error.retry_after >= remaining:  # it will not be back in time for this job
            job.excluded.add(name)
    return None


def _record_success(instance: ProviderInstance, latency: float) -> None:
    instance.breaker.record_success(latency)
    instance.health.record(True, latency)
    if instance.limit is not None:
        instance.limit.release(latency, dropped=False)


def _record_failure(
    router: Router, instance: ProviderInstance, error: ProviderError, latency: float
) -> None:
    if error.counts_as_failure:
        instance.breaker.record_failure(latency)
        instance.health.record(False, latency)
    else:
        instance.breaker.record_ignored()
    if instance.limit is not None:
        dropped = isinstance(error, RateLimited | ProviderUnavailable | ProviderTimeout)
        instance.limit.release(latency, dropped=dropped)
    if isinstance(error, RateLimited):
        if error.retry_after is not None:
            wait = min(error.retry_after, router.settings.router.max_cooldown_s)
            instance.cooldowns.start(instance.name, wait, "retry-after")
        else:
            instance.cooldowns.start_learned(instance.name)


def _learn_budget(instance: ProviderInstance, ctx: CallContext) -> None:
    """Pace by the provider's announced request budget (OpenAI's x-ratelimit-* headers)."""
    budget = ctx.budget
    assert budget is not None
    if instance.budget is None:
        instance.budget = TokenBucket(
            max(budget.limit, 1) / 60.0, max(budget.limit, 1), instance.clock
        )
    instance.budget.set_from_headers(budget.limit, budget.remaining, budget.reset_s)
