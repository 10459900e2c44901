"""One exception tree for all of imagerouter.

::

    ImageRouterError
    ├── ConfigError                 bad config, catalog or scenario file (names file, field, reason)
    ├── PluginError                 a plugin could not be loaded (names the plugin and the reason)
    ├── MissingExtra                an optional part is used without its extra installed
    ├── UnknownModel                the model is neither in the catalog nor an alias
    ├── UnsupportedRequest          the model cannot serve a field of the request (n, size, …)
    ├── ProviderError               one provider call failed; classified once, in the plugin
    │   ├── RateLimited             429: retry_after says when the provider takes us back
    │   ├── ProviderUnavailable     5xx, connection refused or reset, malformed answer
    │   │   └── ProviderTimeout     no answer before the deadline
    │   ├── AuthFailed              401/403: no retry here, fail over, counts against the breaker
    │   ├── ContentRejected         moderation: no retry, no failover
    │   └── InvalidRequest          the provider refused our request: no retry, no failover
    └── NoProviderAvailable         every candidate of a job is exhausted (carries the attempts)

Whether an error is retried, fails over, or feeds the circuit breaker is *data on the class*
(``retryable``, ``failover``, ``counts_as_failure``), decided once here and read by the router;
the router never looks at provider bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from imagerouter.generation import Attempt

__all__ = [
    "AuthFailed",
    "ConfigError",
    "ContentRejected",
    "ImageRouterError",
    "InvalidRequest",
    "MissingExtra",
    "ModelUnavailable",
    "NoProviderAvailable",
    "OutputUnusable",
    "PluginError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "UnknownModel",
    "UnsupportedRequest",
]


class ImageRouterError(Exception):
    """Root of every error imagerouter raises on purpose."""

    #: Machine-readable code used in API error bodies and logs.
    code: ClassVar[str] = "imagerouter_error"


class ConfigError(ImageRouterError):
    """A config, catalog or scenario file is wrong; says which file, which field and why."""

    code = "config_error"

    def __init__(self, reason: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file, self.field, self.reason = file, field, reason
        where = ": ".join(part for part in (file, field) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class PluginError(ImageRouterError):
    """A plugin failed to load or registered something invalid."""

    code = "plugin_error"

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin, self.reason = plugin, reason
        super().__init__(f"plugin {plugin!r}: {reason}")


class MissingExtra(ImageRouterError):
    """Something needs an extra that is not installed; the message is the ``pip install``
    that fixes it (see :mod:`imagerouter.extras`)."""

    code = "missing_extra"

    def __init__(self, extra: str, what: str, missing: Sequence[str]) -> None:
        self.extra, self.what, self.missing = extra, what, list(missing)
        super().__init__(
            f"{what} needs {', '.join(self.missing)}: pip install 'imagerouter-framework[{extra}]'"
        )


class UnknownModel(ImageRouterError):
    """The requested model is not in the catalog (and is no alias of a model that is)."""

    code = "unknown_model"

    def __init__(self, model: str, known: Sequence[str]) -> None:
        self.model, self.known = model, sorted(known)
        super().__init__(f"unknown model {model!r}; known models: {', '.join(self.known)}")


class UnsupportedRequest(ImageRouterError):
    """The model cannot serve one field of the request (more images, a size or a format it
    does not make); ``field`` names it and the message says what the model allows."""

    code = "unsupported_by_model"

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class ModelUnavailable(UnsupportedRequest):
    """The catalog has the model, but no provider instance of this router serves it (every
    one disabled, or an optional one whose plugin or key is missing): a job for it could only
    fail, so it is refused before it is charged."""

    code = "model_unavailable"

    def __init__(self, model: str, providers: Sequence[str]) -> None:
        self.model = model
        named = ", ".join(providers)
        super().__init__(
            "model", f"no provider configured here serves {model} (its providers: {named})"
        )


class OutputUnusable(ImageRouterError):
    """A provider's output could not be taken: its URL failed or timed out, its base64 is
    invalid, or its bytes are not the image or video it says. What an ``accept`` hook of
    :meth:`Router.generate <imagerouter.Router.generate>` raises (the server's output
    storage); the router counts that call as the provider being unavailable and goes on."""

    code = "output_unusable"


class ProviderError(ImageRouterError):
    """A provider call failed. Subclasses say what the router may do about it.

    Attributes:
        provider: the provider instance name that failed.
        status: the HTTP status, when there was one.
        retry_after: seconds the provider asked us to wait, when it said so.
    """

    code = "provider_error"
    #: May the same provider be tried again for this job (after a backoff)?
    retryable: ClassVar[bool] = False
    #: May the job move on to the next candidate provider?
    failover: ClassVar[bool] = True
    #: Does this failure count against the provider's circuit breaker?
    counts_as_failure: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider, self.status, self.retry_after = provider, status, retry_after
        self.message = message
        #: Every attempt of the job, filled in by the router when this error ends the job.
        self.attempts: list[Attempt] = []
        super().__init__(f"{provider}: {message}" if provider else message)

    @property
    def error_class(self) -> str:
        """The class name, as recorded on attempts and in metrics."""
        return type(self).__name__


class RateLimited(ProviderError):
    """429: the provider (for this key) asks us to slow down, maybe saying for how long."""

    code = "rate_limited"
    retryable, failover, counts_as_failure = True, True, False


class ProviderUnavailable(ProviderError):
    """5xx, refused or reset connection, or an answer we could not parse."""

    code = "provider_unavailable"
    retryable, failover, counts_as_failure = True, True, True


class ProviderTimeout(ProviderUnavailable):
    """The provider did not answer before the attempt's deadline."""

    code = "provider_timeout"


class AuthFailed(ProviderError):
    """401/403: our key for this provider is wrong or lacks access."""

    code = "auth_failed"
    retryable, failover, counts_as_failure = False, True, True


class ContentRejected(ProviderError):
    """The provider's moderation refused the prompt; another provider would too."""

    code = "content_rejected"
    retryable, failover, counts_as_failure = False, False, False


class ModelNotServed(ProviderError):
    """The provider answered 404 or 410 for the model's endpoint: it does not serve this model
    (a retired or misnamed id). Another provider of the model may, so the job fails over; the
    provider's health is not blamed, since its other models are unaffected."""

    code = "model_not_served"
    retryable, failover, counts_as_failure = False, True, False


class InvalidRequest(ProviderError):
    """The provider refused the request as malformed; retrying elsewhere would not help."""

    code = "invalid_request"
    retryable, failover, counts_as_failure = False, False, False


class NoProviderAvailable(ImageRouterError):
    """Every candidate provider of a job failed, was skipped, or the deadline passed.

    ``reason`` says why in one machine-readable word (``deadline``, ``max_attempts``,
    ``retry_budget``, ``wait_cap``, ``every_candidate_failed``, ``every_candidate_unavailable``,
    ``no_provider``). ``servable`` names the candidates that could still have served the job
    when it gave up; any at all makes the job *failed while servable*, a routing defect.
    """

    code = "no_provider_available"

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        reason: str = "no_provider_available",
        servable: Sequence[str] = (),
    ) -> None:
        self.attempts = list(attempts)
        self.reason = reason
        self.servable = list(servable)
        super().__init__(message)

    @property
    def failed_while_servable(self) -> bool:
        """True when a candidate could still have served the job as it gave up."""
        return bool(self.servable)

    @property
    def last_error_class(self) -> str | None:
        """Error class of the final attempt, if any attempt was made."""
        for attempt in reversed(self.attempts):
            if attempt.error_class:
                return attempt.error_class
        return None
