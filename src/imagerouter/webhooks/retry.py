"""The retry rules of webhook delivery: the schedule, Retry-After, and what each answer means.

Pure functions of their inputs (the random source is passed in), so the rules are tested
without a clock or a network.

* 2xx: delivered.
* 410 Gone: the URL is disabled for the account until it is registered again.
* Any other 4xx except 429: the receiver refused it; no more attempts.
* 429, 5xx, 3xx (redirects are not followed), timeouts and connection errors: retried on the
  schedule. A ``Retry-After`` on a 429 or 503 is honoured, clamped to between the scheduled
  delay and twice that (as Svix does), so a receiver can slow retries down but not stretch
  them without bound.
* A URL refused by the SSRF policy: no attempt is made, ever.
* Not sent (:class:`NotSent`: the receiver had no room for it within half the timeout, or it
  asked for a pause with a Retry-After): not an attempt. The delivery is due again after the
  wait (the sender's estimate: the pause's end, or the line ahead at the receiver's pace),
  its schedule where it was, so that a receiver's backlog or pause never uses up a webhook's
  attempts without one request made.
* A manual replay is one attempt: its failure does not restart the schedule.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_SCHEDULE_S",
    "Decision",
    "NotSent",
    "RetrySchedule",
    "SendResult",
    "clamp_retry_after",
    "decide",
]

#: Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (8 attempts).
DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

Outcome = Literal["succeeded", "retry", "failed", "disabled", "refused"]

#: The delivery's status after an attempt with each outcome.
STATUS_AFTER: dict[str, str] = {
    "succeeded": "succeeded",
    "retry": "pending",
    "failed": "failed",
    "refused": "failed",
    "disabled": "disabled",
}


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When each attempt is due, relative to the previous one.

    ``delays_s[0]`` is the first attempt's delay (0: at once); attempt ``k + 1`` is due
    ``delays_s[k] * scale`` seconds after attempt ``k``, times a uniform jitter factor in
    ``[1 - jitter, 1 + jitter]``. After ``len(delays_s)`` attempts the delivery fails.
    """

    delays_s: Sequence[float] = DEFAULT_SCHEDULE_S
    jitter: float = 0.2
    scale: float = 1.0

    @property
    def attempts(self) -> int:
        """How many scheduled attempts a delivery gets."""
        return len(self.delays_s)

    def nominal(self, made: int) -> float | None:
        """The scaled delay before the next attempt after ``made`` attempts (no jitter), or
        None when the schedule is exhausted."""
        if made >= len(self.delays_s):
            return None
        return self.delays_s[made] * self.scale

    def delay(self, made: int, rng: random.Random) -> float | None:
        """The jittered delay before the next attempt after ``made`` attempts, or None."""
        nominal = self.nominal(made)
        if nominal is None:
            return None
        return nominal * rng.uniform(1 - self.jitter, 1 + self.jitter)


def clamp_retry_after(retry_after: float, scheduled: float) -> float:
    """``retry_after`` clamped to ``[scheduled, 2 × scheduled]``."""
    return min(max(retry_after, scheduled), 2 * scheduled)


@dataclass(frozen=True, slots=True)
class NotSent:
    """Nothing went to the receiver, and that is no attempt: it had no room for the request
    within its wait (``busy``), or it asked for a pause (``paused``). Send it again after
    ``wait_s``."""

    reason: Literal["busy", "paused"]
    wait_s: float


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one HTTP attempt came to: a status, or an error (and whether it was refused, or
    not sent at all)."""

    status: int | None
    latency_ms: float | None
    error: str | None = None
    retry_after: float | None = None
    refused: bool = False
    not_sent: NotSent | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What follows an attempt: its outcome, and when the next one is due (if any)."""

    outcome: Outcome
    next_delay_s: float | None = None
    next_attempt_at: float | None = None

    @property
    def status(self) -> str:
        """The delivery's status after this decision."""
        return STATUS_AFTER[self.outcome]


def decide(
    result: SendResult,
    *,
    made: int,
    replay: bool,
    schedule: RetrySchedule,
    rng: random.Random,
    now: float,
) -> Decision:
    """The outcome of an attempt, ``made`` scheduled attempts having been made including it."""
    status = result.status
    if result.refused:
        return Decision("refused")
    if status is not None and 200 <= status < 300:
        return Decision("succeeded")
    if status == 410:
        return Decision("disabled")
    if status is not None and 400 <= status < 500 and status != 429:
        return Decision("failed")
    if replay:
        return Decision("failed")
    delay = schedule.delay(made, rng)
    if delay is None:
        return Decision("failed")
    if status in (429, 503) and result.retry_after is not None:
        delay = clamp_retry_after(result.retry_after, delay)
    return Decision("retry", delay, now + delay)
