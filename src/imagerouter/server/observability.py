"""Seeing the server work: Prometheus metrics at ``GET /metrics`` and structured logs.

:func:`setup_observability` wires everything into an app with cleanup contexts, so that
``create_app`` needs one line:

* **Logs** (first context in, last out): :func:`imagerouter.logs.configure_logging` with the
  settings ``log_level`` and ``log_format`` (``off`` leaves logging as the embedding program
  set it), one line per provider attempt (``log_attempt``) and one per finished job, each with
  its ``job_id``. The worker runs each job in a task named after the job, so lines written
  while a job runs carry its id even without :func:`imagerouter.logs.job_context`.
* **Metrics** (last context in): :class:`ServerMetrics`, one registry per app holding the
  router's :class:`~imagerouter.metrics.RouterMetrics` plus the job API's own families, fed by
  the router's listeners, the job store's events and the API middleware's timings
  (:mod:`imagerouter.server.middlewares`).
* **The dashboard** (:mod:`imagerouter.server.dashboard`): ``/dashboard`` and ``/v1/admin/*``.

Other parts of the server count their own events through the :class:`ServerMetrics` stored
under :data:`metrics_key`; webhook delivery calls :func:`webhook_observer`.

One concept (about 450 lines): every metric and log line of a server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from imagerouter.generation import AttemptEvent
from imagerouter.jobs.store import JobQueue, JobStore
from imagerouter.jobs.types import JobEvent
from imagerouter.jobs.worker import WorkerPool
from imagerouter.logs import configure_logging, current_job_id, log_attempt
from imagerouter.metrics import LATENCY_BUCKETS, LabelledChildren, RouterMetrics
from imagerouter.router import Router
from imagerouter.server.keys import (
    deliveries_key,
    metrics_key,
    router_key,
    settings_key,
    state_key,
    store_key,
    workers_key,
)
from imagerouter.webhooks import DeliveryWorker

__all__ = [
    "ServerMetrics",
    "setup_observability",
    "webhook_observer",
]

log = logging.getLogger("imagerouter.jobs")

#: Time to answer a submit: milliseconds normally, seconds when the store is saturated.
SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Routes whose 202 is a new job.
SUBMIT_ROUTES = frozenset({"jobs.submit", "compat.generate"})
_JOB_STATES = ("queued", "processing")
_FINAL = frozenset({"completed", "failed", "canceled"})
_COUNTED = frozenset({*_JOB_STATES, *_FINAL})
_REQUEUE_REASONS = frozenset({"lease_expired", "shutdown"})
_CALL_REASONS = frozenset({"first", "failover", "retry", "hedge", "panic"})
_OUTCOME = re.compile(r"^[a-z][a-z_]{0,31}$")
_PRICE_LOOKUPS_MAX = 10_000

WebhookObserver = Callable[..., None]


class _JobIdFromTask(logging.Filter):
    """Adds the job id of the running task to lines that have none (see :func:`current_job_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = current_job_id()
        return True


# --------------------------------------------------------------------------- metrics


class ServerMetrics:
    """Every metric of one server process, in one registry (none in the global default).

    The router's families come from :class:`~imagerouter.metrics.RouterMetrics`; this class
    adds jobs, submits, credits, HTTP timings and webhook deliveries. Jobs are counted from the
    store's events as committed by *this* process.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        #: The router's attempts, breakers, cooldowns, health and retry budget.
        self.router = RouterMetrics(self.registry)
        r = self.registry
        self.job_transitions = Counter(
            "imagerouter_job_transitions_total",
            "Job state changes, by the state entered (queued also counts re-queues).",
            ["status"],
            registry=r,
        )
        self.jobs_requeued = Counter(
            "imagerouter_jobs_requeued_total",
            "Jobs put back in the queue, by reason (lease_expired, shutdown, other).",
            ["reason"],
            registry=r,
        )
        self.submit_latency = Histogram(
            "imagerouter_job_submit_duration_seconds",
            "Time to accept a job (202 answers of the submit routes), by route.",
            ["route"],
            buckets=SUBMIT_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "imagerouter_job_duration_seconds",
            "End to end: submit to final state, by final status.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "imagerouter_job_queue_wait_seconds",
            "Submit to the job's first lease by a worker.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_latency = Histogram(
            "imagerouter_http_request_duration_seconds",
            "API requests by route name, method and status code.",
            ["route", "method", "code"],
            buckets=(*SUBMIT_BUCKETS, 30, 60, 120),
            registry=r,
        )
        self.calls = Counter(
            "imagerouter_provider_calls_total",
            "Provider calls made, by why: first, failover, retry (these two spend the retry "
            "budget, except after a 429), hedge, panic (a probe while every breaker is open).",
            ["provider", "why"],
            registry=r,
        )
        self.credits_debited = Counter(
            "imagerouter_credits_debited_total", "Credits charged at submit.", registry=r
        )
        self.credits_refunded = Counter(
            "imagerouter_credits_refunded_total",
            "Credits paid back for failed or canceled jobs.",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "imagerouter_webhook_deliveries_total",
            "Webhook delivery attempts by outcome and status class of the answer.",
            ["outcome", "code_class"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "imagerouter_webhook_delivery_duration_seconds",
            "Duration of webhook delivery attempts, by outcome.",
            ["outcome"],
            buckets=(*SUBMIT_BUCKETS, 30),
            registry=r,
        )
        # status -> the labelled counter of job transitions into it
        self._transitions = LabelledChildren(self.job_transitions)
        # (route, method, status) -> the labelled histograms a request's timing goes to
        self._request_children: dict[tuple[str, str, int], tuple[Histogram, Histogram | None]] = {}
        self._calls = LabelledChildren(self.calls)
        self._webhook_deliveries = LabelledChildren(self.webhook_deliveries)
        self._webhook_latency = LabelledChildren(self.webhook_latency)
        # job id -> (status, created_at) for jobs not yet final, as seen in this process
        self._active: dict[str, tuple[str, float | None]] = {}
        self._prices: asyncio.Queue[tuple[str, str]] | None = None
        self._pool: WorkerPool | None = None
        #: The replica's shared-state link (Redis), when one is configured: its health is a
        #: gauge read at scrape time.
        self.shared_state: object | None = None
        #: The webhook delivery worker, when the store keeps deliveries: its attempts and its
        #: receivers' limits are gauges read at scrape time.
        self.deliveries: DeliveryWorker | None = None
        self.registry.register(_JobsCollector(self))
        self.registry.register(_WebhooksCollector(self))

    # --- feeding ---------------------------------------------------------------------------

    def observe_job_events(self, events: Sequence[JobEvent]) -> None:
        """Store listener: transitions, durations, credits, and one log line per final event.
        A batch's transitions and debits are counted once per status (each ``inc`` takes a
        lock): a batch of submits is one call."""
        counted: dict[str, int] = {}
        debited = 0
        for event in events:
            status = str(event.data.get("status", ""))
            if status not in _COUNTED:
                continue
            counted[status] = counted.get(status, 0) + 1
            known = self._active.get(event.job_id)
            reason = event.data.get("reason")
            if status == "queued":
                if reason is None:  # a new job: it was charged in the same transaction
                    self._active[event.job_id] = ("queued", event.created_at)
                    price = event.data.get("price")
                    if isinstance(price, int):
                        debited += price
                    else:
                        self._look_up_price(event)
                else:
                    kind = reason if reason in _REQUEUE_REASONS else "other"
                    self.jobs_requeued.labels(kind).inc()
                    self._active[event.job_id] = ("queued", known[1] if known else None)
            elif status == "processing":
                created = known[1] if known else None
                if created is not None and known[0] == "queued" and event.data.get("run") == 1:
                    self.queue_wait.observe(max(0.0, event.created_at - created))
                self._active[event.job_id] = ("processing", created)
            else:
                self._active.pop(event.job_id, None)
                created = known[1] if known else None
                if created is not None:
                    self.job_duration.labels(status).observe(max(0.0, event.created_at - created))
                refunded = event.data.get("refunded") or 0
                if refunded:
                    self.credits_refunded.inc(refunded)
                _log_final(event, None if created is None else event.created_at - created)
        for status, count in counted.items():
            self._transitions(status).inc(count)
        if debited:
            self.credits_debited.inc(debited)

    def forget_ended(self, events: Sequence[JobEvent]) -> None:
        """Store listener for every replica's events: a job that ended anywhere is no longer
        active here. A job submitted on this replica is often run and finished by another, whose
        final event is not this one's to count; without this, it stayed queued here for ever."""
        active = self._active
        if active:
            for event in events:
                if event.job_id in active and event.data.get("status") in _FINAL:
                    del active[event.job_id]

    def observe_call(self, event: AttemptEvent) -> None:
        """Router listener: count each call made by why it was made."""
        attempt = event.attempt
        if attempt.outcome == "skipped":
            return
        why = (attempt.reason or "").split(" ", 1)[0].rstrip(":")
        self._calls(attempt.provider, why if why in _CALL_REASONS else "other").inc()

    def _look_up_price(self, event: JobEvent) -> None:
        """The store's event does not say what the job was charged: ask the store."""
        if self._prices is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._prices.put_nowait((event.account_id, event.job_id))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One API request answered (the API middleware calls this)."""
        children = self._request_children.get((route, method, status))
        if children is None:  # few: routes × methods × the statuses they answer
            children = self._request_children[(route, method, status)] = (
                self.http_latency.labels(route, method, str(status)),
                self.submit_latency.labels(route)
                if status == 202 and route in SUBMIT_ROUTES
                else None,
            )
        children[0].observe(seconds)
        if children[1] is not None:
            children[1].observe(seconds)

    def observe_webhook_delivery(
        self, outcome: str, *, status: int | None = None, duration_s: float | None = None
    ) -> None:
        """Count one webhook delivery attempt.

        Args:
            outcome: a short lowercase word from a small fixed set: the delivery worker's
                ``succeeded``, ``retry``, ``failed``, ``disabled``, ``refused``; anything that
                is not a lowercase word is counted as ``other``.
            status: the receiver's HTTP status, None when no answer came (timeout, refused).
            duration_s: how long the attempt took.
        """
        outcome = outcome if _OUTCOME.match(outcome) else "other"
        code_class = "none" if status is None else f"{status // 100}xx"
        self._webhook_deliveries(outcome, code_class).inc()
        if duration_s is not None:
            self._webhook_latency(outcome).observe(duration_s)

    # --- binding ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def bound(
        self, router: Router, store: JobStore, pool: WorkerPool | None
    ) -> AsyncIterator[None]:
        """Listen to ``router`` and ``store`` (and read ``pool``) while the block runs."""
        self._pool = pool
        self.router.bind(router)
        router.attempts.add(self.observe_call)
        self._prices = asyncio.Queue(_PRICE_LOOKUPS_MAX)
        lookups = asyncio.get_running_loop().create_task(self._look_up_prices(store))
        unsubscribe = store.subscribe_local(self.observe_job_events)  # count each job once
        unsubscribe_ended = store.subscribe(self.forget_ended)
        try:
            yield
        finally:
            unsubscribe_ended()
            unsubscribe()
            router.attempts.remove(self.router.observe_attempt)
            router.attempts.remove(self.observe_call)
            router.transitions.remove(self.router.observe_transition)
            lookups.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lookups
            self._prices = None
            self._pool = None

    async def _look_up_prices(self, store: JobQueue) -> None:
        """Credits debited, for stores whose ``job.queued`` event does not carry the price."""
        assert self._prices is not None
        while True:
            account_id, job_id = await self._prices.get()
            try:
                job = await store.get_job(account_id, job_id, with_attempts=False)
            except Exception:
                log.debug("price lookup of %s failed", job_id, exc_info=True)
                continue
            if job is not None:
                self.credits_debited.inc(job.price)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


def _log_final(event: JobEvent, duration_s: float | None) -> None:
    status = event.data.get("status")
    error = event.data.get("error") or {}
    level = logging.INFO if status != "failed" else logging.WARNING
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "job %s",
        status,
        extra={
            "job_id": event.job_id,
            "status": status,
            "provider": event.data.get("provider"),
            "error_code": error.get("code") if isinstance(error, dict) else None,
            "refunded": event.data.get("refunded"),
            "duration_ms": None if duration_s is None else round(duration_s * 1000, 1),
        },
    )


class _JobsCollector(Collector):
    """Job gauges read at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "imagerouter_jobs_active",
            "Jobs not yet final that this process submitted or claimed since it started, by the "
            "state it last gave them (one another replica runs stays queued here until it ends).",
            labels=["status"],
        )
        counts = dict.fromkeys(_JOB_STATES, 0)
        for status, _ in list(self._metrics._active.values()):
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            active.add_metric([status], count)
        yield active
        pool = self._metrics._pool
        if pool is not None:
            in_flight = GaugeMetricFamily(
                "imagerouter_jobs_in_flight", "Jobs this process's workers are running now."
            )
            in_flight.add_metric([], pool.running)
            workers = GaugeMetricFamily(
                "imagerouter_workers", "Jobs this process runs at once, at most."
            )
            workers.add_metric([], pool.config.workers)
            yield in_flight
            yield workers
        state = self._metrics.shared_state
        if state is not None:
            shared = GaugeMetricFamily(
                "imagerouter_shared_state_healthy",
                "1 while this replica shares its resilience state through Redis, 0 while it "
                "runs on its own state (Redis down or hanging).",
            )
            shared.add_metric([], 1 if getattr(state, "healthy", False) else 0)
            yield shared
            relayed = CounterMetricFamily(
                "imagerouter_shared_state_relayed",
                "Windows (Retry-After cooldowns, spent budgets, paused webhook receivers) this "
                "replica told the others through the job store as well as Redis; "
                "outcome=failed: the store did not take them.",
                labels=["outcome"],
            )
            relayed.add_metric(["sent"], getattr(state, "relayed", 0))
            relayed.add_metric(["failed"], getattr(state, "relay_failures", 0))
            yield relayed


class _WebhooksCollector(Collector):
    """Webhook figures read at scrape time: attempts in flight, the receivers' limits and
    pauses summed over every receiver (a receiver is not a label: customers' hosts are
    unbounded), and the deliveries given back unsent."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        worker = self._metrics.deliveries
        if worker is None:
            return
        attempts = GaugeMetricFamily(
            "imagerouter_webhook_attempts_in_flight",
            "Webhook attempts running now; slow: those past slow_after_s, moved aside.",
            labels=["state"],
        )
        attempts.add_metric(["running"], worker.inflight - worker.slow)
        attempts.add_metric(["slow"], worker.slow)
        yield attempts
        totals = worker.sender.targets.summary()
        receivers = GaugeMetricFamily(
            "imagerouter_webhook_receivers",
            "Webhook receivers (host and port) this process remembers, by where their limit "
            "of requests at once stands: at_floor (webhook_per_target), above_floor, and of "
            "those at_ceiling (webhook_per_target_max), each this process's share of it.",
            labels=["state"],
        )
        for state in ("at_floor", "above_floor", "at_ceiling"):
            receivers.add_metric([state], totals[state])
        yield receivers
        senders = GaugeMetricFamily(
            "imagerouter_webhook_senders",
            "Processes sharing each webhook receiver's limits (webhook_per_target and "
            "webhook_per_target_max), this one included: the replicas sending webhooks, "
            "counted through the shared state (1 without it).",
        )
        senders.add_metric([], worker.sender.targets.senders)
        yield senders
        requests = GaugeMetricFamily(
            "imagerouter_webhook_receiver_requests",
            "Webhook requests to all receivers: in flight, or waiting in line for a slot of "
            "their receiver's limit.",
            labels=["state"],
        )
        requests.add_metric(["in_flight"], totals["in_flight"])
        requests.add_metric(["waiting"], totals["waiting"])
        yield requests
        paused = GaugeMetricFamily(
            "imagerouter_webhook_receivers_paused",
            "Webhook receivers whose Retry-After pauses every webhook to them now.",
        )
        paused.add_metric([], totals["paused"])
        yield paused
        deferred = CounterMetricFamily(
            "imagerouter_webhook_deferrals",
            "Webhook deliveries given back unsent, without using an attempt: busy (no room "
            "at the receiver within half of webhook_timeout_s) or paused (its Retry-After).",
            labels=["reason"],
        )
        for reason, count in worker.deferred.items():
            deferred.add_metric([reason], count)
        yield deferred


def webhook_observer(app: web.Application) -> WebhookObserver:
    """``observe(outcome, *, status=None, duration_s=None)`` counting webhook deliveries in
    ``app``'s metrics (a no-op for an app without them); see
    :meth:`ServerMetrics.observe_webhook_delivery`."""
    metrics = app.get(metrics_key)
    if metrics is None:
        return lambda outcome, **_: None
    return metrics.observe_webhook_delivery


# --------------------------------------------------------------------------- wiring


async def _logging_ctx(app: web.Application) -> AsyncIterator[None]:
    """Structured logs for the app's lifetime; the previous configuration comes back after."""
    settings = app[settings_key]
    if settings.log_format == "off":
        yield
        return
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    levels = root.level, access.level
    handler = configure_logging(settings.log_level, settings.log_format)
    handler.addFilter(_JobIdFromTask())
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        access.setLevel(levels[1])


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bind the metrics and the attempt log to the router, the store and the worker pool."""
    router = app[router_key]
    router.attempts.add(log_attempt)
    app[metrics_key].shared_state = app.get(state_key)
    app[metrics_key].deliveries = app.get(deliveries_key)
    try:
        async with app[metrics_key].bound(router, app[store_key], app.get(workers_key)):
            yield
    finally:
        app[metrics_key].deliveries = None
        router.attempts.remove(log_attempt)


def setup_observability(app: web.Application) -> None:
    """Metrics and logs for a job API app; call it in ``create_app``, after the other cleanup
    contexts are added (the logs go first anyway, so that they outlive the rest).
    """
    app[metrics_key] = ServerMetrics()
    app.cleanup_ctx.insert(0, _logging_ctx)
    app.cleanup_ctx.append(_metrics_ctx)
