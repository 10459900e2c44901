"""Fault profiles: what can go wrong with one provider, as validated pydantic models.

A :class:`FaultProfile` is the same shape in a scenario file (``[providers.<name>]``), in the
body of ``PUT /_farm/providers/{name}/faults`` and in :meth:`mockproviders.Farm.set_faults`.
Every field is optional and unknown fields are an error:

- ``down``: every request of the provider, polls included, gets 503 in its error shape.
- ``error_rates``: ``{"429"|"500"|"502"|"503"|"401"|"timeout"|"reset"|"malformed"|
  "content_policy": probability}``; the probabilities add up to at most 1.
- ``retry_after_s`` (default 1) and ``retry_after_format`` (``seconds`` | ``http-date`` | ``ms``
  | ``none``) say what a 429 tells the client; ``retry_after_s = "http-date"`` is shorthand for
  one second in the HTTP-date form.
- ``rate_limit``: ``{rpm, burst}``, a token bucket per API key.
- ``latency_ms`` and ``generation_ms``: a :class:`Distribution` (a bare number means fixed).
- ``grace_ms`` (default 100): how long after a 429 a request is still forgiven by the
  ``inside_retry_after`` counter.
- ``seed``: the seed of this provider's random faults (else the scenario's).
- ``phases``: a list of :class:`Phase` overrides on the scenario clock.

Overlaying (:meth:`FaultProfile.overlay`) replaces whole fields: a phase that sets
``error_rates`` replaces the base ``error_rates``, it does not merge into it.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "FAULT_KINDS",
    "DelaySampler",
    "Distribution",
    "FaultKind",
    "FaultProfile",
    "Phase",
    "RateLimit",
    "RetryAfterFormat",
    "validation_problems",
]

FaultKind = Literal[
    "429", "500", "502", "503", "401", "timeout", "reset", "malformed", "content_policy"
]
#: Every random fault, in the order the single random draw walks them.
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

RetryAfterFormat = Literal["seconds", "http-date", "ms", "none"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Millis = Annotated[float, Field(ge=0.0)]

#: z-score of the 95th percentile of a standard normal distribution.
_Z95 = 1.6448536269514722


class _Strict(BaseModel):
    """Immutable, and unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """A delay in milliseconds: ``fixed`` (p50), ``uniform`` (min..max), or ``lognormal``
    fitted to p50 and p95; any draw is clamped to ``min``/``max`` when they are set."""

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    p50: Millis | None = None
    p95: Millis | None = None
    min: Millis | None = None
    max: Millis | None = None

    @model_validator(mode="before")
    @classmethod
    def _number_means_fixed(cls, data: Any) -> Any:
        """``latency_ms = 50`` is shorthand for ``{dist = "fixed", p50 = 50}``."""
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"dist": "fixed", "p50": data}
        return data

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        """Each kind of distribution has the parameters it needs, in a sensible order."""
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.dist == "fixed" and self.p50 is None and self.min is None:
            raise ValueError("a fixed distribution needs p50")
        if self.dist == "uniform" and (self.min is None or self.max is None):
            raise ValueError("a uniform distribution needs min and max")
        if self.dist == "lognormal":
            if self.p50 is None or self.p95 is None:
                raise ValueError("a lognormal distribution needs p50 and p95")
            if self.p50 <= 0 or self.p95 < self.p50:
                raise ValueError("a lognormal distribution needs 0 < p50 <= p95")
        return self

    def sample_ms(self, rng: random.Random) -> float:
        """Draw one delay in milliseconds from ``rng``."""
        return self.sampler().sample_ms(rng)

    def sampler(self) -> DelaySampler:
        """This distribution with its parameters worked out once, for drawing many delays."""
        return DelaySampler(self)


class DelaySampler:
    """A :class:`Distribution` ready to draw from: its lognormal parameters computed once.

    Draws exactly what the distribution describes, from the same calls on the RNG (so a
    seeded RNG gives the same delays through either), without redoing the arithmetic per draw.
    """

    __slots__ = ("_hi", "_kind", "_lo", "_mu", "_sigma", "_value")

    def __init__(self, dist: Distribution) -> None:
        self._lo, self._hi = dist.min, dist.max
        self._mu = self._sigma = self._value = 0.0
        if dist.dist == "uniform":
            self._kind = "uniform"
            self._mu, self._sigma = dist.min or 0.0, dist.max or 0.0
            return
        if dist.dist == "lognormal":
            p50, p95 = dist.p50 or 0.0, dist.p95 or 0.0
            sigma = math.log(p95 / p50) / _Z95
            if sigma > 0:
                self._kind, self._mu, self._sigma = "lognormal", math.log(p50), sigma
                return
            self._kind, self._value = "fixed", p50
            return
        self._kind = "fixed"
        self._value = dist.p50 if dist.p50 is not None else dist.min or 0.0

    def sample_ms(self, rng: random.Random) -> float:
        """Draw one delay in milliseconds from ``rng``."""
        kind = self._kind
        if kind == "lognormal":
            # random.lognormvariate(mu, sigma) is exp(normalvariate(mu, sigma)); one call less.
            value = math.exp(rng.normalvariate(self._mu, self._sigma))
        elif kind == "uniform":
            value = rng.uniform(self._mu, self._sigma)
        else:
            value = self._value
        lo, hi = self._lo, self._hi
        if lo is not None and value < lo:
            value = lo
        if hi is not None and value > hi:
            value = hi
        return value


class RateLimit(_Strict):
    """A token bucket per API key: ``rpm`` tokens a minute, holding at most ``burst``.

    Without ``burst`` the bucket holds one second's worth of requests (at least one).
    """

    rpm: float = Field(gt=0)
    burst: int | None = Field(default=None, ge=1)

    @property
    def capacity(self) -> float:
        """How many tokens a full bucket holds."""
        return float(self.burst) if self.burst is not None else max(1.0, math.ceil(self.rpm / 60))

    @property
    def per_second(self) -> float:
        """Tokens added each second."""
        return self.rpm / 60.0


class FaultProfile(_Strict):
    """Everything that can go wrong with one provider; every field is optional."""

    down: bool = Field(default=False, strict=True)  # "yes" or 1 is a mistake, not true
    error_rates: dict[FaultKind, Probability] = Field(default_factory=dict)
    retry_after_s: float = Field(default=1.0, ge=0)
    retry_after_format: RetryAfterFormat = "seconds"
    rate_limit: RateLimit | None = None
    latency_ms: Distribution | None = None
    generation_ms: Distribution | None = None
    #: A video model's generation time (minutes in life, scaled down in a scenario); unset,
    #: videos take ``generation_ms`` like images.
    video_generation_ms: Distribution | None = None
    grace_ms: Millis = 100.0
    #: Jobs queued ahead of each new queue-API job; worked off evenly while it waits, so its
    #: ``queue_position`` falls from this to 0 over the polls (a busy provider's queue).
    queue_depth: int = Field(default=0, ge=0, le=100_000)
    #: Share of a queue-API job's generation time it spends queued before it runs.
    queued_share: Probability = 0.25
    seed: int | None = None
    phases: list[Phase] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _http_date_shorthand(cls, data: Any) -> Any:
        """``retry_after_s = "http-date"`` means one second, sent as an HTTP-date."""
        if isinstance(data, dict) and data.get("retry_after_s") == "http-date":
            fmt = data.get("retry_after_format", "http-date")
            if fmt != "http-date":
                raise ValueError(
                    f'retry_after_s = "http-date" contradicts retry_after_format = {fmt!r}'
                )
            return {**data, "retry_after_s": 1.0, "retry_after_format": "http-date"}
        return data

    @field_validator("error_rates")
    @classmethod
    def _at_most_certain(cls, rates: dict[str, float]) -> dict[str, float]:
        """One draw picks at most one fault, so the probabilities cannot add up beyond 1."""
        total = sum(rates.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"the probabilities add up to {total:g}, more than 1")
        return rates

    def overlay(self, other: FaultProfile) -> FaultProfile:
        """This profile with every field that ``other`` sets replacing ours (phases excluded)."""
        update = {name: getattr(other, name) for name in other.model_fields_set}
        update.pop("phases", None)
        update.pop("seed", None)
        return self.model_copy(update=update) if update else self

    def without_phases(self) -> FaultProfile:
        """The same profile with no phases: the base that phases are laid over."""
        if not self.phases:
            return self
        data = self.model_dump(exclude_unset=True, exclude={"phases"})
        return FaultProfile.model_validate(data)

    def to_json(self, *, only_set: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; by default only the fields that were set."""
        return self.model_dump(mode="json", exclude_unset=only_set)


class Phase(_Strict):
    """Overrides that apply from ``at_s`` until ``until_s`` (forever when absent)."""

    at_s: float = Field(default=0.0, ge=0)
    until_s: float | None = Field(default=None, gt=0)
    faults: FaultProfile

    @model_validator(mode="after")
    def _ordered(self) -> Phase:
        """A phase ends after it starts, and does not nest phases or change the seed."""
        if self.until_s is not None and self.until_s <= self.at_s:
            raise ValueError("until_s must be greater than at_s")
        if "phases" in self.faults.model_fields_set:
            raise ValueError("a phase cannot contain phases")
        if "seed" in self.faults.model_fields_set:
            raise ValueError("a phase cannot change the seed")
        return self

    def active(self, clock_s: float) -> bool:
        """Is this phase in force at ``clock_s`` seconds on the scenario clock?"""
        return self.at_s <= clock_s and (self.until_s is None or clock_s < self.until_s)


FaultProfile.model_rebuild()


def validation_problems(exc: ValidationError, *, prefix: str = "") -> list[dict[str, str]]:
    """Each problem of a validation error as ``{"field": "a.b.c", "reason": "..."}``."""
    problems = []
    for error in exc.errors(include_url=False):
        parts = [str(part) for part in error["loc"] if part != "[key]"]
        field = ".".join(part for part in (prefix, *parts) if part)
        reason = error["msg"].removeprefix("Value error, ")
        problems.append({"field": field, "reason": reason})
    return problems
