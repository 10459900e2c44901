"""The farm timeline: which profile each provider gets, and when."""

from __future__ import annotations

import pytest

from loadtests.scenario import Phase
from loadtests.timeline import plan_switches, profile_at

BASE = {
    "fal": {"latency_ms": 10, "rate_limit": {"rpm": 600, "burst": 10}},
    "wavespeed": {"latency_ms": 20},
    "openai": {},
}


def _phase(name: str, providers: list[str], at: float, until: float | None, **faults) -> Phase:
    return Phase(name=name, providers=providers, at_s=at, until_s=until, faults=faults)


def test_switches_at_every_start_and_end() -> None:
    """A phase switches its provider to base + faults at its start and back to base at its end."""
    switches = plan_switches([_phase("storm", ["fal"], 10, 20, retry_after_s=2)], BASE, 60)
    assert [(s.at_s, s.provider, s.active) for s in switches] == [
        (10, "fal", ("storm",)),
        (20, "fal", ()),
    ]
    assert switches[0].faults == {**BASE["fal"], "retry_after_s": 2}
    assert switches[1].faults == BASE["fal"]


def test_overlapping_phases_lay_whole_fields_in_order() -> None:
    """Two phases in force on one provider: each sets whole fields, the later one last."""
    phases = [
        _phase("slow", ["fal"], 0, 30, latency_ms=500, error_rates={"503": 0.1}),
        _phase("storm", ["fal"], 10, 20, error_rates={"429": 0.5}),
    ]
    faults, active = profile_at(15, "fal", BASE["fal"], phases, list(BASE), 60)
    assert active == ("slow", "storm")
    assert faults == {
        "latency_ms": 500,
        "rate_limit": BASE["fal"]["rate_limit"],
        "error_rates": {"429": 0.5},
    }
    after, active = profile_at(25, "fal", BASE["fal"], phases, list(BASE), 60)
    assert active == ("slow",)
    assert after["error_rates"] == {"503": 0.1}


def test_star_means_every_provider_and_open_phases_hold() -> None:
    """providers = ["*"] reaches every provider; a phase reaching the end never switches back."""
    switches = plan_switches([_phase("all down", ["*"], 5, 60, down=True)], BASE, 60)
    assert {s.provider for s in switches} == set(BASE)
    assert all(s.at_s == 5 and s.faults["down"] for s in switches)
    forever = plan_switches([_phase("all down", ["*"], 5, None, down=True)], BASE, 60)
    assert len(forever) == len(BASE)
    assert profile_at(1e9, "openai", {}, [_phase("x", ["*"], 5, None, down=True)], list(BASE), 60)[
        0
    ] == {"down": True}


def test_unknown_provider_is_refused() -> None:
    """A phase naming a provider the farm does not serve is an error naming both."""
    with pytest.raises(ValueError, match=r"no provider 'fall'.*fal, wavespeed, openai"):
        plan_switches([_phase("typo", ["fall"], 0, 10, down=True)], BASE, 60)
