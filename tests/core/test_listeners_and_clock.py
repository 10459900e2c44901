"""Listeners say whether anyone listens (so a plan builds no event for no one), a plan's
attempts reach a listener added to the router after the plan was made, and the fake clock
moves forward to a time, never back."""

from __future__ import annotations

import pytest

from imagerouter.clock import FakeClock
from imagerouter.generation import AttemptEvent
from imagerouter.listeners import Listeners
from imagerouter.router import Router
from imagerouter.routing import Call


def test_listeners_are_falsy_until_one_is_added() -> None:
    listeners: Listeners[int] = Listeners()
    assert not listeners
    seen: list[int] = []
    listeners.add(seen.append)
    assert listeners
    listeners(3)
    listeners.remove(seen.append)
    assert not listeners
    listeners(4)
    assert seen == [3]


def test_attempts_reach_a_listener_added_after_the_plan_was_made() -> None:
    clock = FakeClock(1000.0)
    router = Router.from_config(
        {"providers": {p: {"api_key": "k"} for p in ("fal", "openai", "wavespeed", "replicate")}},
        clock=clock,
        environ={},
    )
    plan = router.plan(router.resolve("flux-dev"))
    first = plan.next_step()
    assert isinstance(first, Call)
    events: list[AttemptEvent] = []
    router.attempts.add(events.append)
    clock.advance(2.0)
    plan.record(first, None, 2.0, clock.wall())
    assert [(e.model, e.attempt.provider, e.attempt.outcome) for e in events] == [
        ("flux-dev", first.candidate.instance.name, "ok")
    ]
    assert plan.attempts[-1] is events[0].attempt


def test_fake_clock_advances_to_a_time_and_never_back() -> None:
    clock = FakeClock(1000.0)
    clock.advance_to(1002.5)
    assert clock.now() == 1002.5
    assert clock.wall() == 1_800_000_002.5
    clock.advance_to(1002.5)
    with pytest.raises(ValueError, match="backward"):
        clock.advance_to(1001.0)
    assert clock.now() == 1002.5
