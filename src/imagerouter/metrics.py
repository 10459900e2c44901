"""Prometheus metrics: one registry per process part that owns it (no global default registry).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units) and every label
set is bounded: provider instances, outcomes, error classes, states; never job ids or prompts.
Router state that changes without events (health, cooldowns, in-flight) is read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from imagerouter.errors import NoProviderAvailable
from imagerouter.generation import AttemptEvent
from imagerouter.resilience.breaker import BreakerTransition

if TYPE_CHECKING:
    from imagerouter.router import Router

__all__ = ["CONTENT_TYPE", "LabelledChildren", "RouterMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300)
_BREAKER_STATES = ("closed", "half_open", "open")


class LabelledChildren:
    """A labelled metric's children by their label values, each looked up once: ``labels()``
    takes a lock, and the hot paths (every attempt, every batch of job events) count often."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        """The child for ``values`` (``metric.labels(*values)``)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class RouterMetrics:
    """The router's metrics, fed by its attempt and transition listeners."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter(
            "imagerouter_provider_attempts_total",
            "Provider attempts by provider instance, outcome and error class.",
            ["provider", "outcome", "error_class"],
            registry=self.registry,
        )
        self.attempt_latency = Histogram(
            "imagerouter_provider_attempt_duration_seconds",
            "Duration of provider calls that were made (ok or error).",
            ["provider", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._attempts = LabelledChildren(self.attempts)
        self._latency = LabelledChildren(self.attempt_latency)
        self.skips = Counter(
            "imagerouter_provider_skips_total",
            "Candidates passed over by the router, by reason kind.",
            ["provider", "reason"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "imagerouter_breaker_transitions_total",
            "Circuit breaker transitions by provider instance and new state.",
            ["provider", "to_state"],
            registry=self.registry,
        )
        self.retry_after = Counter(
            "imagerouter_retry_after_received_total",
            "429 answers that carried a Retry-After, by provider instance.",
            ["provider"],
            registry=self.registry,
        )
        self.give_ups = Counter(
            "imagerouter_router_give_ups_total",
            "Jobs the router ended without a provider, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.failed_while_servable = Counter(
            "imagerouter_jobs_failed_while_servable_total",
            "Jobs that gave up while a candidate provider could still have served them "
            "(a routing defect: this stays 0), by reason.",
            ["reason"],
            registry=self.registry,
        )

    def observe_attempt(self, event: AttemptEvent) -> None:
        """Listener for ``router.attempts``."""
        attempt = event.attempt
        if attempt.outcome == "skipped":
            kind = (attempt.reason or "other").split(":")[0].split(" ")[0].lower()
            self.skips.labels(attempt.provider, kind).inc()
            return
        self._attempts(attempt.provider, attempt.outcome, attempt.error_class or "").inc()
        if attempt.latency_ms is not None:
            self._latency(attempt.provider, attempt.outcome).observe(attempt.latency_ms / 1000)
        if attempt.retry_after is not None:
            self.retry_after.labels(attempt.provider).inc()

    def observe_give_up(self, error: NoProviderAvailable) -> None:
        """Listener for ``router.give_ups``."""
        self.give_ups.labels(error.reason).inc()
        if error.failed_while_servable:
            self.failed_while_servable.labels(error.reason).inc()

    def observe_transition(self, transition: BreakerTransition) -> None:
        """Listener for ``router.transitions``."""
        self.transitions.labels(transition.name, str(transition.to_state)).inc()

    def bind(self, router: Router) -> None:
        """Listen to ``router`` and read its live state at every scrape."""
        router.attempts.add(self.observe_attempt)
        router.transitions.add(self.observe_transition)
        router.give_ups.add(self.observe_give_up)
        self.registry.register(_RouterStateCollector(router))

    def render(self) -> bytes:
        """The text exposition of everything in this registry."""
        return generate_latest(self.registry)


class _RouterStateCollector(Collector):
    """Gauges read from the router when Prometheus scrapes."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health = GaugeMetricFamily(
            "imagerouter_provider_health_score", "Health score in [0, 1].", labels=["provider"]
        )
        state = GaugeMetricFamily(
            "imagerouter_breaker_state",
            "1 for the breaker's current state, 0 for the others.",
            labels=["provider", "state"],
        )
        cooldown = GaugeMetricFamily(
            "imagerouter_retry_after_cooldown_seconds",
            "Seconds left in the provider's Retry-After cooldown (0 when none).",
            labels=["provider"],
        )
        pace = GaugeMetricFamily(
            "imagerouter_provider_pace_per_second",
            "Call starts a second the provider key is paced at by its 429s (only paced keys).",
            labels=["provider"],
        )
        in_flight = GaugeMetricFamily(
            "imagerouter_provider_in_flight", "Calls in flight (when limited).", labels=["provider"]
        )
        budget = GaugeMetricFamily(
            "imagerouter_retry_budget_available",
            "Retries into the provider instance its retry budget still allows now.",
            labels=["provider"],
        )
        spend = GaugeMetricFamily(
            "imagerouter_provider_spend_usd",
            "US dollars spent on the provider instance in the current spend-cap window "
            "(catalog cost_usd of completed calls; only instances with a cap).",
            labels=["provider", "window"],
        )
        spend_cap = GaugeMetricFamily(
            "imagerouter_provider_spend_cap_usd",
            "The provider instance's spend cap per window (max_usd_per_hour / _per_day).",
            labels=["provider", "window"],
        )
        capped = GaugeMetricFamily(
            "imagerouter_provider_spend_capped",
            "1 while the window's spend cap is reached (the instance is skipped), else 0.",
            labels=["provider", "window"],
        )
        for entry in self._router.provider_status():
            name = entry["name"]
            health.add_metric([name], entry["health"]["score"])
            for option in _BREAKER_STATES:
                state.add_metric([name, option], float(entry["breaker"]["state"] == option))
            cooldown.add_metric([name], max(0.0, entry["cooldown_remaining_s"] or 0.0))
            if entry["pace"] is not None:
                pace.add_metric([name], entry["pace"]["rate_per_s"])
            if entry["concurrency"] is not None:
                in_flight.add_metric([name], entry["concurrency"]["in_flight"])
            budget.add_metric([name], entry["retry_budget"]["available"])
            for window, meter in (entry.get("spend") or {}).items():
                spend.add_metric([name, window], meter["spent_usd"])
                spend_cap.add_metric([name, window], meter["cap_usd"])
                capped.add_metric([name, window], float(meter["capped"]))
        yield from (health, state, cooldown, pace, in_flight, budget, spend, spend_cap, capped)
