"""The client's routing preferences applied to a plan's candidates, on a fake clock."""

from __future__ import annotations

from imagerouter import ProviderUnavailable
from imagerouter.preferences import RoutingPreferences, apply_preferences, merge_preferences
from imagerouter.routing import Candidate, JobPlan
from tests.routing.test_job_plan import Plans, call_of


def candidates(plans: Plans) -> list[Candidate]:
    """The model's candidates in catalog order (a, b, c; cost_usd 3, 2, 1)."""
    return [Candidate(plans.instances[e.provider], e) for e in plans.model.providers]


def order_of(plans: Plans, prefs: RoutingPreferences) -> list[str]:
    applied = apply_preferences(prefs, candidates(plans), plans.model.policy, plans.rng)
    return [c.instance.name for c in applied.candidates]


def test_sort_by_price_latency_and_throughput() -> None:
    """price: cheapest first; latency: lowest p50 first, unknown last; throughput: health
    per second of a call, so a fast provider that mostly fails goes behind a steady one."""
    plans = Plans(["a", "b", "c"])
    assert order_of(plans, RoutingPreferences(sort="price")) == ["c", "b", "a"]
    for _ in range(40):
        plans.instances["a"].health.record(True, 0.5)
        plans.instances["b"].health.record(True, 1.0)
        for _ in range(9):
            plans.instances["a"].health.record(False, 0.5)
    assert order_of(plans, RoutingPreferences(sort="latency")) == ["a", "b", "c"]
    assert order_of(plans, RoutingPreferences(sort="throughput")) == ["b", "a", "c"]


def test_order_goes_first_then_sort_and_no_fallbacks_keeps_one() -> None:
    """``order`` names go first in its order; the rest follow by ``sort``; without fallbacks
    only the first is a candidate and the others are skipped with ``no_fallbacks``."""
    plans = Plans(["a", "b", "c"])
    assert order_of(plans, RoutingPreferences(order=["a"], sort="price")) == ["a", "c", "b"]
    applied = apply_preferences(
        RoutingPreferences(order=["b"], allow_fallbacks=False),
        candidates(plans),
        "priority",
        plans.rng,
    )
    assert [c.instance.name for c in applied.candidates] == ["b"]
    assert [(c.instance.name, r.split(":")[0]) for c, r in applied.skipped] == [
        ("a", "no_fallbacks"),
        ("c", "no_fallbacks"),
    ]


def test_a_fixed_order_is_kept_through_failover() -> None:
    """The plan keeps the preferences' order: c is called first, and b after c fails,
    although the catalog's priority order is a, b, c."""
    plans = Plans(["a", "b", "c"])
    applied = apply_preferences(
        RoutingPreferences(sort="price", ignore=["a"]), candidates(plans), "priority", plans.rng
    )
    plan = JobPlan(
        plans.model,
        applied.candidates,
        plans.clock.now() + 60,
        plans.settings,
        plans.clock,
        plans.rng,
        fixed_order=applied.fixed_order,
    )
    first = call_of(plan.next_step())
    assert first.candidate.instance.name == "c"
    plan.record(first, ProviderUnavailable("503", status=503), 0.1, 0.0)
    assert call_of(plan.next_step()).candidate.instance.name == "b"
    assert "a" not in plan.servable()


def test_merge_lays_the_request_over_the_key_defaults_field_by_field() -> None:
    """Fields the request sets win; the key's other fields stay."""
    key = RoutingPreferences(ignore=["openai"], sort="price", max_price_credits=40)
    request = RoutingPreferences(sort="latency", max_price_credits=None)
    merged = merge_preferences(key, request)
    assert merged == RoutingPreferences(ignore=["openai"], sort="latency")
    assert merge_preferences(None, request) is request
    assert merge_preferences(key, None) is key
