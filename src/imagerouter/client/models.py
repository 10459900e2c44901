"""What the client returns: small frozen views over the API's JSON (``raw`` keeps it all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINAL_STATUSES", "PROGRESS_EVENT", "Event", "Job", "JobPage", "ProgressUpdate"]

FINAL_STATUSES = frozenset({"completed", "failed", "canceled"})
#: The event a job emits while a provider's queue holds it.
PROGRESS_EVENT = "job.progress"


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the API shows it."""

    id: str
    status: str
    request: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: float | None = None
    finished_at: float | None = None
    credits: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        """From a job body (``GET /v1/jobs/{id}``, a listing row, or a submit's 202)."""
        return cls(
            id=body["id"],
            status=body["status"],
            request=body.get("request") or {},
            result=body.get("result"),
            error=body.get("error"),
            created_at=body.get("created_at"),
            finished_at=body.get("finished_at"),
            credits=body.get("credits") or {},
            raw=body,
        )

    @property
    def final(self) -> bool:
        """True once completed, failed or canceled."""
        return self.status in FINAL_STATUSES

    @property
    def image_urls(self) -> list[str]:
        """The result's image URLs (empty unless completed)."""
        images = (self.result or {}).get("images") or []
        return [image["url"] for image in images if image.get("url")]


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``list``, newest first."""

    jobs: list[Job]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One job transition from the event stream."""

    id: int
    type: str
    job_id: str
    created_at: float
    data: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Event:
        """From an event body."""
        return cls(body["id"], body["type"], body["job_id"], body["created_at"], body["data"])

    @property
    def final(self) -> bool:
        """True for the event that ends the job."""
        return self.data.get("status") in FINAL_STATUSES

    @property
    def progress(self) -> ProgressUpdate | None:
        """What the provider's queue reported, for a ``job.progress`` event; else None."""
        if self.type != PROGRESS_EVENT:
            return None
        position = self.data.get("queue_position")
        return ProgressUpdate(
            job_id=self.job_id,
            event_id=self.id,
            provider=str(self.data.get("provider") or ""),
            provider_status=str(self.data.get("provider_status") or ""),
            queue_position=position if isinstance(position, int) else None,
            log=self.data.get("log"),
        )


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """A ``job.progress`` event: the provider's own status word (fal ``IN_QUEUE`` /
    ``IN_PROGRESS``, WaveSpeed ``created`` / ``processing``, Replicate ``starting`` /
    ``processing``), the queue position when the provider reports one, its newest log line."""

    job_id: str
    event_id: int
    provider: str
    provider_status: str
    queue_position: int | None = None
    log: str | None = None

    def describe(self) -> str:
        """One short line: ``fal IN_QUEUE, position 3`` / ``replicate processing: 40%``."""
        text = f"{self.provider} {self.provider_status}"
        if self.queue_position is not None:
            text += f", position {self.queue_position}"
        if self.log:
            text += f": {self.log}"
        return text
