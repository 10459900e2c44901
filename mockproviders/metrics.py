"""The farm's own counters in Prometheus form, at ``GET /_farm/metrics``.

The same numbers as ``GET /_farm/stats``, per provider only (API keys are not labels: they are
unbounded and half secret), read from the live stats at every scrape. ``POST /_farm/reset``
zeroes them, which Prometheus sees as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mockproviders.keys import FARM_STATE
from mockproviders.state import FarmState

__all__ = ["FarmCollector", "add_metrics_route", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (
    ("requests", "mockfarm_requests", "Requests received (generations and polls)."),
    ("generations", "mockfarm_generations", "Generation requests received."),
    (
        "retry_after_issued",
        "mockfarm_retry_after_issued",
        "429 answers that carried a Retry-After.",
    ),
    (
        "inside_retry_after",
        "mockfarm_inside_retry_after",
        "Generation requests that arrived inside a Retry-After window issued to their key "
        "(after the grace period); a well-behaved router keeps this at zero.",
    ),
    (
        "inside_retry_after_raw",
        "mockfarm_inside_retry_after_raw",
        "Generation requests inside a Retry-After window, the grace period included.",
    ),
)


class FarmCollector(Collector):
    """Reads :class:`~mockproviders.state.FarmState`'s stats and profiles when scraped."""

    def __init__(self, state: FarmState) -> None:
        self._state = state

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._state.stats_snapshot()
        providers = stats["providers"]
        for field, name, documentation in _COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["provider"])
            for provider, entry in providers.items():
                family.add_metric([provider], entry[field])
            yield family
        answers = CounterMetricFamily(
            "mockfarm_responses",
            "Answers by provider and status (an HTTP code, or timeout / reset: never answered).",
            labels=["provider", "status"],
        )
        for provider, entry in providers.items():
            for status, count in entry["by_status"].items():
                answers.add_metric([provider, status], count)
        yield answers
        down = GaugeMetricFamily(
            "mockfarm_provider_down",
            "1 while the provider's profile in force is down.",
            labels=["provider"],
        )
        for provider in providers:
            down.add_metric(
                [provider],
                float(bool(self._state.engine.describe(provider)["effective"].get("down"))),
            )
        yield down
        clock = GaugeMetricFamily(
            "mockfarm_scenario_clock_seconds", "Seconds on the scenario clock."
        )
        clock.add_metric([], stats["clock_s"])
        yield clock


def render_metrics(state: FarmState) -> bytes:
    """The text exposition of ``state``'s counters."""
    registry = CollectorRegistry()
    registry.register(FarmCollector(state))
    return generate_latest(registry)


async def metrics_view(request: web.Request) -> web.Response:
    """``GET /_farm/metrics``."""
    body = render_metrics(request.app[FARM_STATE])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_metrics_route(app: web.Application) -> None:
    """Mount ``GET /_farm/metrics`` on a farm app."""
    app.router.add_get("/_farm/metrics", metrics_view)
