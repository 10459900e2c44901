"""The pydantic shapes of every request and response body the server speaks.

They are the single source of both validation and the OpenAPI document, so what
``GET /openapi.json`` promises is what the handlers send.

One table (over 400 lines): every body the API speaks, in one place for the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from imagerouter.generation import GeneratedImage, OutputFormat, check_prompt
from imagerouter.preferences import RoutingPreferences

__all__ = [
    "AccountOut",
    "AttemptOut",
    "CompatAccepted",
    "CompatJob",
    "CreditsOut",
    "DeliveryAttemptOut",
    "DeliveryList",
    "DeliveryOut",
    "ErrorBody",
    "EventList",
    "EventOut",
    "EventQuery",
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
    "ModelCapabilities",
    "ModelList",
    "ModelOut",
    "OpenAIErrorBody",
    "OpenAIImage",
    "OpenAIImageRequest",
    "OpenAIImagesResponse",
    "ProviderList",
    "ProviderOut",
    "ReadyOut",
    "RotateSecretIn",
    "SharedStateOut",
    "WebhookIn",
    "WebhookOut",
    "WebhookSecretOut",
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
    outcome: Literal["ok", "error", "skipped", "canceled"]
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
    reason: str | None = Field(
        default=None,
        description="Why no provider served it: deadline, max_attempts, retry_budget, "
        "wait_cap, every_candidate_failed, every_candidate_unavailable, no_provider.",
    )
    failed_while_servable: bool | None = Field(
        default=None,
        description="True when a candidate provider could still have served the job as it "
        "gave up (a routing defect; `servable` names them).",
    )
    servable: list[str] | None = None


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


class ModelCapabilities(_Out):
    """What a model makes; a request outside it is a 422 naming the field."""

    sizes: list[str] | None = Field(description="The only WxH sizes served, or null for bounds.")
    min_side: int
    max_side: int
    max_pixels: int
    max_aspect: float | None
    multiple_of: int
    max_n: int
    output_formats: list[str]


class ModelOut(_Out):
    """A model clients can ask for."""

    id: str
    object: Literal["model"] = "model"
    description: str
    policy: str
    providers: list[str] = Field(description="Provider instances in routing order.")
    aliases: list[str]
    kind: Literal["image", "video"] = "image"
    credits: ModelCredits | None = Field(default=None, description="Image models.")
    capabilities: ModelCapabilities | None = Field(default=None, description="Image models.")
    video_credits: dict[str, Any] | None = Field(
        default=None, description="Video models: per_second by resolution, audio_per_second."
    )
    video: dict[str, Any] | None = Field(
        default=None,
        description="Video models: durations, resolutions, aspect_ratios (defaults first), "
        "audio, audio_default, first_frame.",
    )


class ModelList(_Out):
    """Every model of the catalog."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class ProviderOut(BaseModel):
    """A provider instance's live state: breaker, health score, cooldown, concurrency, spend."""

    model_config = ConfigDict(extra="allow")

    name: str
    plugin: str
    base_url: str | None
    breaker: dict[str, Any]
    health: dict[str, Any]
    cooldown_remaining_s: float | None
    concurrency: dict[str, Any] | None
    spend: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Per capped window (hour, day): cap_usd, spent_usd, remaining_usd, "
        "resets_in_s, capped; null when the instance has no spend cap.",
    )


class SharedStateOut(_Out):
    """Where the resilience state lives: ``local`` (no Redis configured) or ``redis``;
    ``healthy`` False while Redis is down or hangs and this replica routes on its own state."""

    backend: Literal["local", "redis"]
    healthy: bool
    degraded_since: float | None = None


class ProviderList(_Out):
    """Every provider instance, and whether their state is shared with the other replicas."""

    object: Literal["list"] = "list"
    data: list[ProviderOut]
    shared_state: SharedStateOut


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
    next_cursor: str | None = Field(description="Pass as ?cursor= for older entries.")


class LedgerQuery(BaseModel):
    """Query parameters of ``GET /v1/account``: ``cursor``, the page's ``next_cursor``, as
    ``GET /v1/jobs`` takes its own; ``before``, its older name, is still read."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    cursor: int | None = Field(default=None, ge=1, le=2**62)  # a ledger id: SQLite's range
    before: int | None = Field(default=None, ge=1, le=2**62)

    @property
    def older_than(self) -> int | None:
        """The ledger id the page starts below, whichever name carried it."""
        return self.cursor if self.cursor is not None else self.before


class HealthOut(_Out):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyOut(_Out):
    """Readiness: the store answers and the worker pool is taking jobs."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


# --- OpenAI-compatible ---------------------------------------------------------------------------


class OpenAIImageRequest(BaseModel):
    """OpenAI's ``images.generate`` body; parameters OpenAI knows and imagerouter has no use
    for are ignored (the route refuses those OpenAI does not know)."""

    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, AfterValidator(check_prompt)] = Field(min_length=1, max_length=32_000)
    model: str = Field(default="gpt-image-2", min_length=1, max_length=200)
    n: int | None = Field(default=None, ge=1, le=10, strict=True)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: OutputFormat | None = None
    background: Literal["auto", "opaque", "transparent"] | None = None
    user: str | None = None
    routing: RoutingPreferences | None = Field(
        default=None,
        description="imagerouter extension (the SDK's extra_body): provider preferences.",
    )


class OpenAIInputTokens(BaseModel):
    """``usage.input_tokens_details``."""

    model_config = ConfigDict(extra="forbid")

    image_tokens: int
    text_tokens: int


class OpenAIOutputTokens(BaseModel):
    """``usage.output_tokens_details``."""

    model_config = ConfigDict(extra="forbid")

    image_tokens: int
    text_tokens: int


class OpenAIUsage(BaseModel):
    """Token usage as GPT image models report it, estimated."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int
    input_tokens_details: OpenAIInputTokens
    output_tokens: int
    output_tokens_details: OpenAIOutputTokens | None = None
    total_tokens: int


class OpenAIImage(BaseModel):
    """One image of an OpenAI images response: ``b64_json`` for GPT image models, ``url``
    (absolute) or ``b64_json`` for DALL·E, with ``revised_prompt`` for dall-e-3."""

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
    background: str | None = None
    usage: OpenAIUsage | None = Field(
        default=None, description="GPT image models only; an estimate (see the README)."
    )


# --- delivery: webhooks, deliveries, events ------------------------------------------------------


class WebhookIn(BaseModel):
    """``PUT /v1/webhook``: the URL that receives the account's job webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http(s) URL; loopback, private, link-local and metadata addresses are "
        "refused unless the server's webhook_allow lists them.",
    )
    progress: bool = Field(
        default=False,
        strict=True,
        description="Also send job.progress webhooks (queue position, provider status and "
        "log line while a provider's queue holds the job); off unless true.",
    )


class RotateSecretIn(BaseModel):
    """``POST /v1/webhook/secret/rotate``: how long the old secret keeps signing."""

    model_config = ConfigDict(extra="forbid")

    grace_s: float | None = Field(
        default=None,
        strict=True,  # a number (an integer is one): not a boolean, not a string
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds the old secret keeps signing beside the new one; default: the "
        "server's webhook_secret_grace_s.",
    )


class WebhookSecretOut(_Out):
    """A signing secret, without its value."""

    id: int
    created_at: float
    expires_at: float | None = Field(description="Null for the current secret.")
    current: bool


class WebhookOut(_Out):
    """The account's webhook: URL, whether it is enabled, and its signing secrets."""

    object: Literal["webhook"] = "webhook"
    url: str | None
    enabled: bool = Field(description="False once the URL answered 410 Gone (until re-PUT).")
    disabled_at: float | None
    disabled_reason: str | None
    progress: bool = Field(description="job.progress webhooks are sent too (opted in).")
    secret: str | None = Field(
        description="The new whsec_ secret: shown once, on creation and rotation; else null."
    )
    secrets: list[WebhookSecretOut] = Field(description="The secrets that sign now.")
    created_at: float | None
    updated_at: float | None


DeliveryStatusName = Literal["pending", "delivering", "succeeded", "failed", "disabled"]


class DeliveryAttemptOut(_Out):
    """One attempt at sending a webhook."""

    attempt: int
    trigger: Literal["scheduled", "replay"]
    scheduled_at: float = Field(description="When the attempt was due.")
    started_at: float
    outcome: Literal["succeeded", "retry", "failed", "disabled", "refused"]
    status: int | None = Field(description="The receiver's HTTP status, if it answered.")
    latency_ms: float | None
    error: str | None
    retry_after: float | None = Field(description="The receiver's Retry-After, in seconds.")
    next_delay_s: float | None
    next_attempt_at: float | None


class DeliveryOut(_Out):
    """A job's webhook: one ``webhook-id`` for every attempt and replay, and its log."""

    id: str = Field(description="The webhook-id header of every attempt.")
    object: Literal["delivery"] = "delivery"
    job_id: str
    event_id: int
    event_type: str
    url: str
    status: DeliveryStatusName
    attempts: int
    next_attempt_at: float | None
    last_error: str | None = Field(
        description="Why the last attempt failed, or why the webhook waits unsent: its "
        "receiver had no room for it in time, or asked for a pause with a Retry-After (not "
        "an attempt: it goes at next_attempt_at)."
    )
    created_at: float
    updated_at: float
    log: list[DeliveryAttemptOut]


class DeliveryList(_Out):
    """A job's webhook deliveries."""

    object: Literal["list"] = "list"
    data: list[DeliveryOut]


class EventOut(_Out):
    """One job transition, with the store's increasing event id."""

    id: int
    object: Literal["event"] = "event"
    type: str = Field(
        description="job.queued, job.processing, job.progress (what the provider's queue "
        "reports: provider, provider_status, queue_position, log), job.completed, …"
    )
    job_id: str
    created_at: float
    data: dict[str, Any]


class EventList(_Out):
    """A page of events, oldest first (the JSON answer when not asked for SSE)."""

    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool
    last_event_id: int = Field(description="Pass as ?after= for the next page.")


class EventQuery(BaseModel):
    """Query parameters of the event routes."""

    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(default=None, ge=0, le=2**62)
    limit: int = Field(default=100, ge=1, le=500)
