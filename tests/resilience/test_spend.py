"""Spend caps on a fake clock: the windows, the shared totals, and admission by the plan."""

from __future__ import annotations

import random

import pytest

from imagerouter import FakeClock, Provider
from imagerouter.catalog import CatalogModel, Credits, ModelProvider
from imagerouter.config import ProviderSettings, RouterSettings
from imagerouter.errors import ConfigError
from imagerouter.instances import ProviderInstance
from imagerouter.resilience.breaker import CircuitBreaker
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthConfig, HealthScore
from imagerouter.resilience.spend import SpendAdded, SpendMeter
from imagerouter.routing import Call, Candidate, GiveUp, JobPlan, Wait

HOUR, DAY = 3600.0, 86400.0
#: A wall clock exactly at the start of a UTC day (and so of an hour).
DAY_START = 20_000 * DAY


def clock_at(offset_s: float = 0.0) -> FakeClock:
    """A fake clock whose wall time is ``offset_s`` after the start of a UTC day."""
    return FakeClock(start=1000.0, wall_start=DAY_START + offset_s)


def test_spend_below_the_cap_admits_and_reaching_it_caps_until_the_hour_ends() -> None:
    """Spend adds up within the hour; at the cap the meter says which window and when it frees."""
    clock = clock_at(600.0)  # 10 minutes into the hour
    meter = SpendMeter("fal", {"hour": 1.0}, clock)
    meter.record(0.4)
    meter.record(0.5)
    assert meter.spent("hour") == pytest.approx(0.9)
    assert meter.capped() is None
    meter.record(0.1)
    capped = meter.capped()
    assert capped is not None
    assert capped.window == "hour"
    assert capped.frees_in_s == pytest.approx(3000.0)
    assert capped.reason.startswith("spend_cap: ")
    clock.advance(2999.0)
    assert meter.capped() is not None  # one second before the window ends
    clock.advance(1.0)
    assert meter.capped() is None  # a new hour: spend starts again from 0
    assert meter.spent("hour") == 0.0


def test_the_day_cap_outlasts_the_hour_and_the_later_window_is_reported() -> None:
    """With both caps reached the meter reports the window that frees last (the day)."""
    clock = clock_at(3 * HOUR + 1800.0)
    meter = SpendMeter("fal", {"hour": 1.0, "day": 2.0}, clock)
    meter.record(1.0)
    assert meter.capped() is not None
    assert meter.capped().window == "hour"
    clock.advance(1800.0)  # the next hour
    assert meter.capped() is None
    meter.record(1.0)
    capped = meter.capped()
    assert capped is not None
    assert capped.window == "day"
    assert capped.frees_in_s == pytest.approx(DAY - 4 * HOUR)
    clock.advance(HOUR)  # a new hour, the same day: still capped by the day
    assert meter.capped() is not None
    assert meter.capped().window == "day"
    assert meter.snapshot()["hour"] == {
        "cap_usd": 1.0,
        "spent_usd": 0.0,
        "remaining_usd": 1.0,
        "resets_in_s": HOUR,
        "capped": False,
    }
    clock.advance(DAY - 5 * HOUR)
    assert meter.capped() is None


def test_fleet_totals_are_kept_as_a_max_and_local_spend_counts_until_acknowledged() -> None:
    """A peer's total raises the count; the store's acknowledgement moves local spend into it,
    never counting it less than once; totals of another window are ignored."""
    clock = clock_at(10.0)
    meter = SpendMeter("fal", {"hour": 1.0}, clock)
    sent: list[SpendAdded] = []
    meter.on_spend.add(sent.append)
    index = meter.index("hour")
    meter.record(0.25)
    assert sent == [SpendAdded("fal", "hour", index, 0.25)]
    assert meter.apply("hour", index, 0.5)  # a peer spent 0.5 (before ours reached Redis)
    assert meter.spent("hour") == pytest.approx(0.75)
    assert not meter.apply("hour", index, 0.4)  # older than what is known: kept the max
    meter.acknowledge("hour", index, 0.25, 0.75)  # Redis added ours: 0.75 in all
    assert meter.spent("hour") == pytest.approx(0.75)
    assert not meter.apply("hour", index - 1, 5.0)  # last hour's total
    assert meter.apply("hour", index, 1.0)
    assert meter.capped() is not None


def test_a_meter_without_a_shared_store_counts_its_own_spend() -> None:
    """Nothing acknowledged: what was recorded is what is spent."""
    meter = SpendMeter("fal", {"day": 0.1}, clock_at())
    for _ in range(3):
        meter.record(0.042)
    assert meter.spent("day") == pytest.approx(0.126)
    assert meter.capped() is not None


def test_bad_caps_are_refused() -> None:
    """A zero or negative cap, or an unknown window, is an error (the config refuses them too)."""
    with pytest.raises(ValueError, match="week"):
        SpendMeter("fal", {"week": 1.0}, clock_at())
    with pytest.raises(ValueError, match="> 0"):
        SpendMeter("fal", {"hour": 0.0}, clock_at())
    from imagerouter.config import validate

    with pytest.raises(ConfigError) as caught:
        validate(ProviderSettings, {"max_usd_per_hour": 0}, prefix="providers.fal")
    assert caught.value.field == "providers.fal.max_usd_per_hour"
    caps = ProviderSettings(max_usd_per_hour=2, max_usd_per_day=10).spend_caps
    assert caps == {"hour": 2.0, "day": 10.0}
    assert ProviderSettings().spend_caps == {}


# --- admission ---------------------------------------------------------------------------------


def _instance(name: str, clock: FakeClock, caps: dict[str, float] | None) -> ProviderInstance:
    settings = RouterSettings()
    return ProviderInstance(
        name=name,
        provider=Provider(name=name),
        breaker=CircuitBreaker(name, settings.breaker, clock),
        health=HealthScore(HealthConfig(), clock),
        cooldowns=Cooldowns(clock),
        clock=clock,
        spend=SpendMeter(name, caps, clock) if caps else None,
    )


def _plan(clock: FakeClock, instances: list[ProviderInstance]) -> JobPlan:
    model = CatalogModel(
        name="m",
        credits=Credits(low=1, standard=1, high=1),
        providers=tuple(
            ModelProvider(provider=i.name, model=f"{i.name}-model", cost_usd=0.5) for i in instances
        ),
    )
    candidates = [Candidate(i, e) for i, e in zip(instances, model.providers, strict=True)]
    return JobPlan(model, candidates, clock.now() + 60.0, RouterSettings(), clock, random.Random(1))


def test_a_capped_instance_is_skipped_with_reason_spend_cap_and_the_next_one_called() -> None:
    """The plan passes over the capped provider, records why, and calls the next one."""
    clock = clock_at(100.0)
    fal, wavespeed = _instance("fal", clock, {"hour": 1.0}), _instance("wavespeed", clock, None)
    fal.charge(0.5, 2)  # one call of two images at $0.50 each
    why = fal.unavailable(clock.now())
    assert why is not None
    assert why.kind == "spend_cap"
    assert why.ready_at == pytest.approx(clock.now() + HOUR - 100.0)
    plan = _plan(clock, [fal, wavespeed])
    step = plan.next_step()
    assert isinstance(step, Call)
    assert step.candidate.instance.name == "wavespeed"
    skipped = [a for a in plan.attempts if a.outcome == "skipped"]
    assert [(a.provider, a.reason.split(":")[0]) for a in skipped] == [("fal", "spend_cap")]


def test_every_provider_capped_ends_the_job_and_it_was_not_servable() -> None:
    """With every candidate capped for the rest of the hour (longer than any wait cap) the job
    gives up, and the give-up names no servable provider: it is no defect."""
    clock = clock_at(100.0)
    instances = [_instance(n, clock, {"hour": 0.5}) for n in ("fal", "wavespeed")]
    for instance in instances:
        instance.charge(0.5, 1)
    plan = _plan(clock, instances)
    assert plan.servable() == []
    step = plan.next_step()
    assert isinstance(step, GiveUp)
    assert step.error.servable == []
    assert not step.error.failed_while_servable
    assert "spend_cap" in str(step.error)


def test_a_window_that_frees_before_the_wait_cap_is_waited_for() -> None:
    """Capped a few seconds before the hour ends: the job waits for the new hour, then calls."""
    clock = clock_at(HOUR - 5.0)
    fal = _instance("fal", clock, {"hour": 0.5})
    fal.charge(0.5, 1)
    plan = _plan(clock, [fal])
    step = plan.next_step()
    assert isinstance(step, Wait)
    clock.advance(step.until - clock.now())
    step = plan.next_step()
    assert isinstance(step, Call)
    assert step.candidate.instance.name == "fal"
