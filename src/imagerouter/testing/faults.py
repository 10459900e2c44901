"""Every fault the mock farm can inject, and the error a conforming plugin must turn it into.

A :class:`Fault` is a fault profile for the farm plus the expected outcome; :meth:`Fault.judge`
compares what the plugin did with what it should have done and, when they differ, says both in
one line::

    fault 429 with Retry-After: 2 → expected RateLimited(retry_after=2.0),
    got ProviderUnavailable(retry_after=None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagerouter.errors import (
    AuthFailed,
    ContentRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from imagerouter.generation import ProviderOutput

__all__ = ["FAULTS", "Fault", "describe_outcome"]

#: An exact number of seconds, an inclusive (low, high) range, or None (no Retry-After).
RetryAfterExpectation = float | tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault the farm injects, and the error it must become."""

    #: Short id, used in pytest ids and ``only=`` filters (``"429"``, ``"timeout"``…).
    id: str
    #: What the farm does, as a person would say it ("429 with Retry-After: 2").
    description: str
    #: The fault profile the farm runs with for this check.
    profile: Mapping[str, Any]
    #: The exact error class the plugin must raise.
    expected: type[ProviderError]
    #: What ``error.retry_after`` must be.
    retry_after: RetryAfterExpectation = None
    #: Seconds the attempt may take (a ``timeout`` fault ends at this deadline).
    deadline_s: float = 5.0
    #: Calls that must succeed first (a token bucket needs its one token spent).
    warm_up_calls: int = 0

    def expectation(self) -> str:
        """``RateLimited(retry_after=2.0)``: the expected outcome, as the failure message says."""
        expected = self.retry_after
        if isinstance(expected, tuple):
            low, high = expected
            return f"{self.expected.__name__}(retry_after between {low:g} and {high:g})"
        shown = None if expected is None else float(expected)
        return f"{self.expected.__name__}(retry_after={shown})"

    def judge(self, outcome: BaseException | ProviderOutput | None, provider: str) -> str | None:
        """None if ``outcome`` (what generate raised or returned) is right, else the message."""
        problem = self._problem(outcome, provider)
        if problem is None:
            return None
        return f"fault {self.description} → expected {self.expectation()}, got {problem}"

    def _problem(self, outcome: BaseException | ProviderOutput | None, provider: str) -> str | None:
        got = describe_outcome(outcome)
        if not isinstance(outcome, ProviderError) or type(outcome) is not self.expected:
            return got
        if not _retry_after_matches(outcome.retry_after, self.retry_after):
            return got
        if outcome.provider != provider:
            return f"{got} naming provider {outcome.provider!r} instead of {provider!r}"
        return None


def _retry_after_matches(actual: float | None, expected: RetryAfterExpectation) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, tuple):
        return expected[0] <= actual <= expected[1]
    return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-6)


def describe_outcome(outcome: object) -> str:
    """What a plugin did, in the words of a failure message."""
    if isinstance(outcome, ProviderOutput):
        return f"a successful result with {len(outcome.images)} image(s)"
    if outcome is None:
        return "nothing (generate returned None)"
    if isinstance(outcome, ProviderError):
        retry_after = None if outcome.retry_after is None else float(outcome.retry_after)
        shown = f"{type(outcome).__name__}(retry_after={retry_after})"
        return f"{shown} saying {str(outcome)!r}" if str(outcome) else shown
    if isinstance(outcome, TimeoutError):
        return "no answer: generate was still running well past its deadline"
    if not isinstance(outcome, BaseException):  # a plugin's answer of the wrong type
        shown = repr(outcome)
        shown = shown if len(shown) <= 120 else shown[:119] + "…"
        return f"a {type(outcome).__name__}, not a ProviderOutput: {shown}"
    return (
        f"{type(outcome).__name__}: {outcome} (not a ProviderError: classify it in the plugin; "
        "the router can only guess at unclassified errors)"
    )


def _rates(kind: str) -> dict[str, Any]:
    return {"error_rates": {kind: 1.0}}


#: Every fault the farm can inject, in the order the kit checks them.
FAULTS: tuple[Fault, ...] = (
    Fault(
        "429",
        "429 with Retry-After: 2",
        {**_rates("429"), "retry_after_s": 2},
        RateLimited,
        2.0,
    ),
    Fault(
        "429-ms",
        "429 with retry-after-ms: 250",
        {**_rates("429"), "retry_after_s": 0.25, "retry_after_format": "ms"},
        RateLimited,
        0.25,
    ),
    Fault(
        "429-date",
        "429 with Retry-After as an HTTP-date 3 s ahead",
        {**_rates("429"), "retry_after_s": 3, "retry_after_format": "http-date"},
        RateLimited,
        (2.0, 4.0),  # an HTTP-date has whole-second resolution
    ),
    Fault(
        "429-bare",
        "429 without any Retry-After",
        {**_rates("429"), "retry_after_format": "none"},
        RateLimited,
        None,
    ),
    Fault(
        "rate-limit",
        "429 from the per-key token bucket (Retry-After up to 1 s)",
        {"rate_limit": {"rpm": 60, "burst": 1}},
        RateLimited,
        (0.001, 1.0),
        warm_up_calls=1,
    ),
    Fault("500", "500 server error", _rates("500"), ProviderUnavailable),
    Fault("502", "502 bad gateway", _rates("502"), ProviderUnavailable),
    Fault("503", "503 service unavailable", _rates("503"), ProviderUnavailable),
    Fault("down", "provider down (503 on every request)", {"down": True}, ProviderUnavailable),
    Fault(
        "timeout",
        "no answer at all (the request is held past the deadline)",
        _rates("timeout"),
        ProviderTimeout,
        deadline_s=1.0,
    ),
    Fault("reset", "connection reset with no answer", _rates("reset"), ProviderUnavailable),
    Fault("malformed", "200 with a truncated JSON body", _rates("malformed"), ProviderUnavailable),
    Fault(
        "content-policy",
        "content-policy rejection (in the provider's own shape)",
        _rates("content_policy"),
        ContentRejected,
    ),
    Fault("401", "401 auth failure", _rates("401"), AuthFailed),
)
