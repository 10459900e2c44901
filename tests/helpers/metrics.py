"""Prometheus text exposition, read as the tests compare it: one parse, samples by name and
labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "parse_metrics", "sample"]

#: ``{(sample name, sorted labels): value}``.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """A Prometheus exposition as ``{(sample name, sorted labels): value}``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for one in family.samples:
            out[(one.name, tuple(sorted(one.labels.items())))] = one.value
    return out


def sample(values: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is absent)."""
    return values.get((name, tuple(sorted(labels.items()))), 0.0)
