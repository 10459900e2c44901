"""The pydantic shapes of every request and response body the server speaks.

They are the single source of both validation and the OpenAPI document, so what
``GET /openapi.json`` promises is what the handlers send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagerouter.models import GeneratedImage, OutputFormat

__all__ = [
    "AccountOut",
    "AttemptOut",
    "CompatAccepted",
    "CompatJob",
    "CreditsOut",
    "ErrorBody",
    "HealthOut",
    "JobAccepted",
    "JobError",
    "JobLinks",
    "JobList",
    "JobListQuery",
    "JobOut",
    "JobResult",
    "LedgerEntryOut",
    "LedgerQuery",
    "ModelList",
    "ModelOut",
    "OpenAIErrorBody",
    "OpenAIImage",
    "OpenAIImageRequest",
    "OpenAIImagesResponse",
    "ProviderList",
    "ProviderOut",
    "ReadyOut",
]

JobStatusName = Literal["queued", "processing", "completed", "failed", "canceled"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a machine code, a message naming the field, and the field's path."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable explanation naming the field at fault.")
    field: str | None = Field(description="Dotted path of the field at fault, or null.")


class ErrorBody(_Out):
    """Every error answer of the job API."""

    error: ErrorDetail


class OpenAIErrorDetail(_Out):
    """An error in OpenAI's shape."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(_Out):
    """Every error answer of the OpenAI-compatible endpoint."""

    error: OpenAIErrorDetail


# --- jobs --------------------------------------------------------------------------------------


class JobLinks(_Out):
    """Where to find and control the job."""

    self: str
    cancel: str | None = Field(description="DELETE this URL to cancel; null once final.")


class CreditsOut(_Out):
    """What the job cost: debited at submit, refunded once if it failed or was canceled."""

    price: int
    charged: int
    refunded: int


class JobAccepted(_Out):
    """The answer to a submit: the job is stored, charged and queued."""

    id: str
    object: Literal["job"] = "job"
    status: Literal["queued"] = "queued"
    created_at: float
    credits: CreditsOut
    links: JobLinks


class AttemptOut(_Out):
    """One call (or a decision to skip) to one provider during one run of the job."""

    run: int = Field(description="Which lease of the job made this attempt (1 for the first).")
    provider: str
    outcome: Literal["ok", "error", "skipped"]
    started_at: float | None
    latency_ms: float | None
    error_class: str | None
    error: str | None
    status: int | None
    retry_after: float | None
    reason: str | None


class JobResult(_Out):
    """A completed job's images (URLs or base64) and who made them."""

    model: str
    provider: str
    provider_model: str
    images: list[GeneratedImage]
    provider_request_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class JobError(BaseModel):
    """Why a job failed or was canceled."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class JobOut(_Out):
    """A job: its request, status, result or error, every attempt, and its credits."""

    id: str
    object: Literal["job"] = "job"
    status: JobStatusName
    request: dict[str, Any] = Field(description="The unified request, as submitted.")
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    deadline_at: float
    runs: int = Field(description="How many times a worker leased the job.")
    result: JobResult | None
    error: JobError | None
    attempts: list[AttemptOut] | None = Field(description="Every attempt; null in listings.")
    credits: CreditsOut
    links: JobLinks


class JobList(_Out):
    """One page of jobs, newest first."""

    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class JobListQuery(BaseModel):
    """Query parameters of ``GET /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatusName | None = None
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


class CompatJob(_Out):
    """The job id, under its compatible wire name."""

    jobId: str


class CompatAccepted(_Out):
    """``POST /api/generate/image``'s answer: ``{"data": {"jobId": ...}}``."""

    data: CompatJob


# --- catalog, providers, account, health -------------------------------------------------------


class ModelCredits(_Out):
    """Credits per 1024x1024 image by quality tier."""

    low: int
    standard: int
    high: int


class ModelOut(_Out):
    """A model clients can ask for."""

    id: str
    object: Literal["model"] = "model"
    description: str
    policy: str
    providers: list[str] = Field(description="Provider instances in routing order.")
    aliases: list[str]
    credits: ModelCredits


class ModelList(_Out):
    """Every model of the catalog."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class ProviderOut(BaseModel):
    """A provider instance's live state: breaker, health score, cooldown, concurrency."""

    model_config = ConfigDict(extra="allow")

    name: str
    plugin: str
    base_url: str | None
    breaker: dict[str, Any]
    health: dict[str, Any]
    cooldown_remaining_s: float | None
    concurrency: dict[str, Any] | None


class ProviderList(_Out):
    """Every provider instance."""

    object: Literal["list"] = "list"
    data: list[ProviderOut]


class LedgerEntryOut(_Out):
    """One movement of credits."""

    id: int
    kind: Literal["grant", "debit", "refund"]
    amount: int
    balance_after: int
    job_id: str | None
    note: str | None
    created_at: float


class AccountOut(_Out):
    """The caller's account: its balance and its ledger, newest first."""

    id: str
    object: Literal["account"] = "account"
    name: str
    balance: int
    ledger: list[LedgerEntryOut]
    next_cursor: str | None = Field(description="Pass as ?before= for older entries.")


class LedgerQuery(BaseModel):
    """Query parameters of ``GET /v1/account``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    before: int | None = Field(default=None, ge=1)


class HealthOut(_Out):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyOut(_Out):
    """Readiness: the store answers and the worker pool is taking jobs."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


# --- OpenAI-compatible ---------------------------------------------------------------------------


class OpenAIImageRequest(BaseModel):
    """OpenAI's ``images.generate`` body; fields imagerouter has no use for are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=32_000)
    model: str = Field(default="gpt-image-2", min_length=1, max_length=200)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: OutputFormat | None = None
    user: str | None = None


class OpenAIImage(BaseModel):
    """One image of an OpenAI images response."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    """OpenAI's images response."""

    model_config = ConfigDict(extra="forbid")

    created: int
    data: list[OpenAIImage]
    output_format: str | None = None
    size: str | None = None
    quality: str | None = None
