"""Queued jobs of the queue APIs (submit, then poll): their state is a function of time.

A job spends the first ``queued_share`` (a quarter by default) of its ``generation_ms`` queued
and the rest running, then it is done; a cancel freezes it as canceled. While queued, its
``queue_position`` counts down from the ``queue_depth`` it was submitted behind to 0, evenly
over its queued time, as a busy provider's queue reports it. Jobs are forgotten an hour after
they were submitted (and the oldest go first beyond ``max_jobs``), so a long load test does not
grow the farm without bound.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from imagerouter.clock import Clock

__all__ = ["FarmJob", "FarmJobState", "FarmJobs"]

#: Share of the generation time a job spends queued before it starts running.
QUEUED_SHARE = 0.25


class FarmJobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELED = "canceled"


@dataclass(slots=True)
class FarmJob:
    """One submitted generation: when it was submitted, how long it takes, and its inputs."""

    id: str
    #: The app or model it was submitted to, as the adapter names it.
    app: str
    submitted: float
    generation_s: float
    #: The engine decided the provider's moderation rejects it.
    content_policy: bool = False
    #: Whatever the adapter needs to render the job (prompt, size, seed…).
    data: dict[str, Any] = field(default_factory=dict)
    #: Unix time of submission, for ``created_at`` fields.
    submitted_wall: float = 0.0
    canceled_at: float | None = None
    #: Jobs ahead of this one when it was submitted.
    queue_depth: int = 0
    #: Share of ``generation_s`` spent queued.
    queued_share: float = QUEUED_SHARE

    def state(self, now: float) -> FarmJobState:
        """The job's state at monotonic time ``now``."""
        if self.canceled_at is not None:
            return FarmJobState.CANCELED
        elapsed = now - self.submitted
        if elapsed >= self.generation_s:
            return FarmJobState.DONE
        if elapsed < self.generation_s * self.queued_share:
            return FarmJobState.QUEUED
        return FarmJobState.RUNNING

    def queue_position(self, now: float) -> int:
        """Jobs still ahead at ``now``: from ``queue_depth`` down to 0 while queued, then 0."""
        queued_s = self.generation_s * self.queued_share
        if self.state(now) is not FarmJobState.QUEUED or queued_s <= 0:
            return 0
        left = 1.0 - (now - self.submitted) / queued_s
        return max(0, min(self.queue_depth, math.floor(self.queue_depth * left)))

    def created_at(self) -> str:
        """The submission time as ISO 8601 UTC (``2026-01-02T03:04:05.678901Z``)."""
        return datetime.fromtimestamp(self.submitted_wall, UTC).isoformat().replace("+00:00", "Z")


class FarmJobs:
    """The jobs of one provider, by id, forgotten after ``ttl_s``."""

    def __init__(self, clock: Clock, *, ttl_s: float = 3600.0, max_jobs: int = 200_000) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[str, FarmJob] = OrderedDict()

    def submit(
        self,
        app: str,
        generation_s: float,
        *,
        content_policy: bool = False,
        data: dict[str, Any] | None = None,
        queue_depth: int = 0,
        queued_share: float = QUEUED_SHARE,
    ) -> FarmJob:
        """Create and keep a new job, submitted now, behind ``queue_depth`` others."""
        self._forget_old()
        job = FarmJob(
            id=str(uuid.uuid4()),
            app=app,
            submitted=self._clock.now(),
            submitted_wall=self._clock.wall(),
            generation_s=generation_s,
            content_policy=content_policy,
            data=dict(data or {}),
            queue_depth=queue_depth,
            queued_share=queued_share,
        )
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> FarmJob | None:
        """The job with that id, if the store still has it."""
        return self._jobs.get(job_id)

    def now(self) -> float:
        """Monotonic time, on the clock the jobs were stamped with."""
        return self._clock.now()

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[FarmJob]:
        """The jobs still remembered, oldest first."""
        return iter(list(self._jobs.values()))

    def _forget_old(self) -> None:
        horizon = self._clock.now() - self._ttl_s
        while self._jobs:
            oldest = next(iter(self._jobs.values()))
            if oldest.submitted >= horizon and len(self._jobs) < self._max_jobs:
                break
            self._jobs.popitem(last=False)
