"""A labelled metric's children are looked up once each and count into the same series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from imagerouter.metrics import LabelledChildren


def test_one_child_per_label_values_counting_into_the_registry() -> None:
    registry = CollectorRegistry()
    calls = Counter("calls_total", "calls", ["provider", "why"], registry=registry)
    children = LabelledChildren(calls)
    assert children("fal", "first") is children("fal", "first")
    assert children("fal", "first") is not children("fal", "failover")
    children("fal", "first").inc()
    children("fal", "first").inc(2)
    children("fal", "failover").inc()
    value = registry.get_sample_value
    assert value("calls_total", {"provider": "fal", "why": "first"}) == 3
    assert value("calls_total", {"provider": "fal", "why": "failover"}) == 1
