"""Settings: a TOML file, then environment variables, then code; validated by pydantic.

A config file looks like::

    catalog = "catalog.toml"          # optional override of the shipped model catalog
    plugins_dir = "plugins.d"         # optional directory of drop-in plugin files

    [router]
    deadline_s = 120

    [providers.fal]                   # an instance of the fal plugin, with its own key
    api_key_env = "FAL_KEY"

    [providers.openai-team-b]         # a second OpenAI instance with another key
    plugin = "openai"
    api_key_env = "OPENAI_KEY_TEAM_B"
    weight = 2

Relative paths resolve against the config file's directory. :func:`load_toml` and
:func:`validate` read any TOML file into a pydantic model with errors that name the file, the
field and the reason; the catalog and the mock farm's scenario files use them too.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from imagerouter.errors import ConfigError
from imagerouter.resilience.breaker import BreakerConfig
from imagerouter.resilience.health import HealthConfig
from imagerouter.resilience.pace import PaceConfig
from imagerouter.transport.wire import split_url

__all__ = [
    "CONFIG_ENV",
    "ProviderSettings",
    "RouterSettings",
    "Settings",
    "deep_merge",
    "field_path",
    "http_url_problem",
    "load_settings",
    "load_toml",
    "validate",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None


def field_path(loc: Sequence[str | int], prefix: str = "") -> str:
    """``("providers", "fal", "phases", 0, "at_s")`` → ``providers.fal.phases[0].at_s``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validate(
    model: type[ModelT], data: Any, *, file: str | None = None, prefix: str = ""
) -> ModelT:
    """Validate ``data`` as ``model``; the first problem becomes a ConfigError with its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [part for part in error["loc"] if not str(part).startswith("function-")]
        reason = error["msg"]
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            reason = "unknown field"
        elif error["type"] == "value_error":  # a validator's own words, without pydantic's
            reason = reason.removeprefix("Value error, ")
        raise ConfigError(reason, file=file, field=field_path(loc, prefix) or None) from None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top: tables merge key by key, anything else replaces.
    Neither argument is changed (values are copied)."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


CONFIG_ENV = "IMAGEROUTER_CONFIG"
#: What ``max_concurrency`` takes, as an error about it says.
MAX_CONCURRENCY_TAKES = 'an integer ≥ 1 or "adaptive"'
_PATH_ENV = (("catalog", "IMAGEROUTER_CATALOG"), ("plugins_dir", "IMAGEROUTER_PLUGINS_DIR"))


class ProviderSettings(BaseModel):
    """One provider instance: which plugin, with which key, at which URL."""

    model_config = ConfigDict(extra="forbid")

    plugin: str | None = Field(default=None, description="Plugin provider_id; default: the name.")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="Env var holding the key.")
    base_url: str | None = None
    enabled: bool = True
    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | Literal["adaptive"] | None = Field(
        default=None, description="Calls in flight at most: a number, 'adaptive' (AIMD), or none."
    )
    max_usd_per_hour: float | None = Field(
        default=None, gt=0, description="Spend cap (catalog cost_usd) per UTC hour; none: no cap."
    )
    max_usd_per_day: float | None = Field(
        default=None, gt=0, description="Spend cap (catalog cost_usd) per UTC day; none: no cap."
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def spend_caps(self) -> dict[str, float]:
        """Window (``"hour"``, ``"day"``) → cap in US dollars, for the caps that are set."""
        caps = {"hour": self.max_usd_per_hour, "day": self.max_usd_per_day}
        return {window: cap for window, cap in caps.items() if cap is not None}

    @field_validator("max_concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: object) -> object:
        """A count of at least 1 or ``"adaptive"``, said as such (not as a union's parts)."""
        if value is None or value == "adaptive":
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(MAX_CONCURRENCY_TAKES)

    @field_validator("base_url")
    @classmethod
    def _callable_url(cls, value: str | None) -> str | None:
        """The URL every call of the instance goes to: refused here, not at each call."""
        problem = None if value is None else http_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def http_url_problem(url: str) -> str | None:
    """Why a provider cannot be called at ``url`` (not an absolute http(s) URL, credentials in
    it), in the words the HTTP pool would use at each call; None when it can."""
    try:
        split_url(url)
    except ValueError as exc:
        return str(exc)
    return None


class RetryBudgetSettings(BaseModel):
    """Retries and failovers as a fraction of first attempts over a sliding window."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(default=0.2, ge=0)
    min_retries: int = Field(default=10, ge=0, description="Floor per window.")
    window_s: float = Field(default=10.0, gt=0)


class HttpSettings(BaseModel):
    """The shared outbound connection pool."""

    model_config = ConfigDict(extra="forbid")

    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_host: int = Field(default=0, ge=0, description="0 means no cap.")


class RouterSettings(BaseModel):
    """How hard the router tries for one job."""

    model_config = ConfigDict(extra="forbid")

    deadline_s: float = Field(default=300.0, gt=0, description="A job's whole time budget.")
    attempt_timeout_s: float = Field(default=120.0, gt=0, description="Cap on one attempt.")
    video_deadline_s: float = Field(
        default=1800.0, gt=0, description="A video job's whole time budget."
    )
    video_attempt_timeout_s: float = Field(
        default=900.0, gt=0, description="Cap on one attempt of a video job."
    )
    max_attempts: int = Field(default=8, ge=1, description="Provider calls per job, at most.")
    max_wait_s: float = Field(default=60.0, ge=0, description="Longest single wait of a job.")
    max_total_wait_s: float = Field(default=120.0, ge=0, description="A job's total waiting.")
    max_cooldown_s: float = Field(default=300.0, gt=0, description="Cap on a Retry-After.")
    backoff_base_s: float = Field(default=0.25, gt=0)
    backoff_cap_s: float = Field(default=10.0, gt=0)
    recheck_s: float = Field(
        default=0.05, gt=0, description="Re-look interval when waiting on probes or slots."
    )
    wake_margin_s: float = Field(
        default=0.01, ge=0, description="Sleep this much past a Retry-After before calling."
    )
    retry_budget: RetryBudgetSettings = Field(default_factory=RetryBudgetSettings)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    pace: PaceConfig = Field(default_factory=PaceConfig)


class Settings(BaseModel):
    """Everything the router needs besides the plugins themselves."""

    model_config = ConfigDict(extra="forbid")

    catalog: str | None = None
    plugins_dir: str | None = None
    ca_bundle: str | None = Field(default=None, description="Extra CA bundle for providers.")
    http: HttpSettings = Field(default_factory=HttpSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    #: The ``[server]`` table, validated by :mod:`imagerouter.server.settings` when serving.
    server: dict[str, Any] = Field(default_factory=dict)
    #: Where these settings came from (a file name or "<code>"), for error messages.
    source: str = "<code>"


def load_settings(
    path: str | Path | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings from ``path`` (or ``$IMAGEROUTER_CONFIG``), else from ``data``.

    ``IMAGEROUTER_CATALOG`` and ``IMAGEROUTER_PLUGINS_DIR`` override the file's values.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = dict(data or {})
    # what an error names as the settings' file when there is none
    source = "<code>" if data is not None else "<no config file: the environment>"
    if path is not None:
        path = Path(path)
        raw = {**load_toml(path), **raw}
        source = str(path)
        for key in ("catalog", "plugins_dir"):
            if isinstance(raw.get(key), str) and not Path(raw[key]).is_absolute():
                raw[key] = str(path.parent / raw[key])
    for key, env_name in (
        ("catalog", "IMAGEROUTER_CATALOG"),
        ("plugins_dir", "IMAGEROUTER_PLUGINS_DIR"),
    ):
        if environ.get(env_name):
            raw[key] = environ[env_name]
    raw["source"] = source
    return validate(Settings, raw, file=source)
