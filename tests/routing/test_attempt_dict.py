"""An attempt's JSON form (stored with the job, sent to listeners) holds every field."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from imagerouter.generation import Attempt


def test_as_dict_holds_every_field_in_order() -> None:
    attempt = Attempt(
        provider="fal",
        outcome="error",
        started_at=1_800_000_000.5,
        latency_ms=12.5,
        error_class="RateLimited",
        error="HTTP 429: slow down",
        status=429,
        retry_after=2.0,
        reason="retry: 429",
    )
    shown = attempt.as_dict()
    assert shown == asdict(attempt)
    assert list(shown) == [f.name for f in fields(Attempt)]
    assert json.loads(json.dumps(shown)) == shown


def test_as_dict_is_a_copy() -> None:
    attempt = Attempt(provider="fal", outcome="ok")
    shown = attempt.as_dict()
    shown["provider"] = "wavespeed"
    assert attempt.provider == "fal"
