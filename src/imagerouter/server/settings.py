"""Server settings: the ``[server]`` table of the config file, then env, then flags.

::

    [server]
    data_dir = "/var/lib/imagerouter"
    port = 8080
    workers = 32
    lease_s = 30

    [server.rate_limits.generate]
    rate_per_s = 5
    burst = 20

    [server.storage]
    backend = "local"                  # or "s3": see imagerouter.storage.config

Environment variables ``IMAGEROUTER_SERVER_<FIELD>`` override the file, with ``__`` between
nested names (``IMAGEROUTER_SERVER_RATE_LIMITS__GENERATE__BURST=50``); command-line flags
override both. A list or table setting's variable is JSON (``'["127.0.0.1/32"]'``,
``'{"generate": {"rate_per_s": 5, "burst": 20}}'``), and a list may also be a plain ``a,b,c``;
one that does not parse stops the start with a ConfigError naming the variable. ``data_dir``
relative to the config file resolves against its directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from imagerouter.config import CONFIG_ENV, Settings, deep_merge, load_settings, load_toml, validate
from imagerouter.errors import ConfigError
from imagerouter.extras import require
from imagerouter.jobs.backends import open_store
from imagerouter.jobs.postgres import is_postgres_url
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.store import JobStore
from imagerouter.jobs.worker import WorkerConfig
from imagerouter.private import private_dir
from imagerouter.server.ratelimit import LimitPolicy
from imagerouter.storage.config import StorageSettings
from imagerouter.webhooks.retry import DEFAULT_SCHEDULE_S, RetrySchedule
from imagerouter.webhooks.ssrf import UrlPolicy
from imagerouter.webhooks.worker import DeliveryConfig

__all__ = [
    "ENV_PREFIX",
    "ServerSettings",
    "load_router_settings",
    "load_server_settings",
    "router_config",
]

ENV_PREFIX = "IMAGEROUTER_SERVER_"


def _default_limits() -> dict[str, LimitPolicy]:
    return {
        "generate": LimitPolicy(rate_per_s=5, burst=20),
        "read": LimitPolicy(rate_per_s=50, burst=100),
    }


class ServerSettings(BaseModel):
    """Everything ``imagerouter serve`` needs besides the router's own settings."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Field(default=Path(".imagerouter"), description="Holds imagerouter.db.")
    public_url: str | None = Field(
        default=None,
        description="Base URL for absolute links; the jobs API's links are relative without "
        "it, and the OpenAI-compatible route builds them from the request's own scheme and host.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose Forwarded / X-Forwarded-Proto / "
        "X-Forwarded-Host headers are believed when building absolute URLs without public_url "
        "(e.g. 127.0.0.1/32); from any other peer those headers are ignored.",
    )
    farm: str | None = Field(
        default=None, description="Run the mock farm in-process with this scenario."
    )

    workers: int = Field(default=16, ge=0, description="Jobs run at once; 0 runs none.")
    lease_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float | None = Field(default=None, gt=0, description="Default: lease_s / 3.")
    sweep_interval_s: float = Field(default=5.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    max_runs: int = Field(default=5, ge=1, description="Leases of one job before it fails.")
    progress_events: bool = Field(
        default=True, description="Store job.progress events from the providers' queues."
    )
    progress_interval_s: float = Field(
        default=1.0, gt=0, description="Least time between two job.progress events of a job."
    )
    progress_delay_s: float = Field(
        default=0.5,
        ge=0,
        description="How long a job's first job.progress event waits: a job finished sooner "
        "writes none (its final event says it all).",
    )
    job_deadline_s: float | None = Field(
        default=None, gt=0, description="A job's whole life; default: router.deadline_s."
    )
    video_job_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="A video job's whole life; default: router.video_deadline_s.",
    )

    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limits: dict[str, LimitPolicy] = Field(default_factory=_default_limits)
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    idempotency_lock_s: float = Field(
        default=30.0, gt=0, description="After this, a vanished holder's key may be retaken."
    )
    auth_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is cached; revocations drop it sooner "
        "(the store tells every server).",
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    sqlite_batch_max: int = Field(default=256, ge=1)

    # --- several replicas: a shared job store and shared resilience state ----------------------
    store: str | None = Field(
        default=None,
        description="Job store URL: postgresql://user@host/db[?schema=NAME] for PostgreSQL, "
        "shared by every replica; default: SQLite under data_dir.",
        pattern=r"^(postgresql|postgres|sqlite)://",
    )
    state: str | None = Field(
        default=None,
        description="Resilience state URL: redis://host:port/db shares breakers, Retry-After "
        "cooldowns and rate-limit budgets across replicas; default: in-process.",
        pattern=r"^(redis|rediss|unix)://",
    )
    state_prefix: str = Field(
        default="imagerouter", min_length=1, description="Redis key prefix of one fleet."
    )

    admin_key: SecretStr | None = Field(
        default=None, description="Opens /dashboard and /v1/admin/*; unset, they answer 403."
    )
    log_level: str = Field(default="INFO", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    log_format: Literal["auto", "json", "text", "off"] = Field(
        default="auto", description="auto: text on a terminal, JSON lines otherwise; off: as is."
    )

    # --- delivery: webhooks, live events, output storage ---------------------------------------
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs or host names webhooks may reach although not public "
        "(e.g. 127.0.0.1/32); loopback, private, link-local and metadata addresses are "
        "refused otherwise.",
    )
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=120)
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_SCHEDULE_S),
        min_length=1,
        description="Delay before each attempt after the one before (the first: 0, at once).",
    )
    webhook_retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    webhook_retry_scale: float = Field(
        default=1.0, gt=0, description="Multiplies every delay of the schedule (tests: 0.001)."
    )
    webhook_secret_grace_s: float = Field(
        default=24 * 3600.0, ge=0, description="How long a rotated-out secret keeps signing."
    )
    webhook_concurrency: int = Field(
        default=64,
        ge=1,
        description="Webhook attempts in flight at once that answered within "
        "webhook_slow_after_s; a slower one moves aside (see webhook_slow_max).",
    )
    webhook_slow_after_s: float = Field(
        default=0.25,
        gt=0,
        description="An attempt still waiting after this long stops holding a slot, so "
        "receivers that hang never hold up healthy ones.",
    )
    webhook_slow_max: int = Field(
        default=1024,
        ge=0,
        description="Most slow attempts waiting at once (each an open socket); past it, slow "
        "ones keep their slots.",
    )
    webhook_per_target: int = Field(
        default=4,
        ge=1,
        description="Webhook requests in flight at once to one host and port that are always "
        "allowed (a receiver that hangs holds no more), unless it refuses with a Retry-After "
        "and the limit adapts (webhook_per_target_max above it): then it may fall to 1. "
        "For the whole fleet: with shared state, each replica sending webhooks takes its "
        "share (divided among them, at least 1).",
    )
    webhook_per_target_max: int = Field(
        default=64,
        ge=1,
        description="The most requests in flight to one host and port that keeps up: its "
        "limit grows from webhook_per_target while it answers 2xx promptly and falls back on "
        "a 429, 5xx, timeout or failed connection (at most webhook_per_target: a fixed limit). "
        "For the whole fleet, shared as webhook_per_target is.",
    )
    webhook_pause_max_s: float = Field(
        default=60.0,
        ge=0,
        description="A receiver that refuses two round trips running with a Retry-After (a "
        "429 or 503, no 2xx between) is paused, every webhook to its host and port, for that "
        "long, at most this; those due meanwhile wait without using an attempt (0: never; each "
        "delivery's own retry honours Retry-After within the schedule either way). With "
        "`state` (Redis), a pause that 503s earned holds on the other replicas too.",
    )
    webhook_lease_s: float = Field(default=60.0, gt=0)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    sse_heartbeat_s: float = Field(
        default=15.0, gt=0, description="Idle SSE streams get a comment this often."
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)

    @field_validator("webhook_allow", "webhook_retry_schedule_s", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """An environment variable gives a list as ``a,b,c``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not entry or "://" in entry or " " in entry:
                raise ValueError(f"{entry!r} is not a CIDR, an address or a host name")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a CIDR or an IP address") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError(f"{value!r} is not an http(s) base URL such as https://img.example")
        return value

    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``trusted_proxies`` as networks."""
        return [ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies]

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must not be negative")
        return value

    @model_validator(mode="after")
    def _limits_complete(self) -> ServerSettings:
        defaults = _default_limits()
        for name in ("generate", "read"):
            self.rate_limits.setdefault(name, defaults[name])
        return self

    @model_validator(mode="after")
    def _webhook_lease(self) -> ServerSettings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("webhook_lease_s must be longer than webhook_timeout_s")
        return self

    def url_policy(self) -> UrlPolicy:
        """The SSRF policy for webhook URLs."""
        return UrlPolicy.from_allow(self.webhook_allow)

    def delivery_config(self) -> DeliveryConfig:
        """The webhook delivery worker's part of these settings."""
        return DeliveryConfig(
            concurrency=self.webhook_concurrency,
            slow_after_s=self.webhook_slow_after_s,
            slow_max=self.webhook_slow_max,
            per_target=self.webhook_per_target,
            per_target_max=self.webhook_per_target_max,
            lease_s=self.webhook_lease_s,
            poll_interval_s=self.webhook_poll_interval_s,
            shutdown_grace_s=min(self.shutdown_grace_s, self.webhook_timeout_s),
            schedule=RetrySchedule(
                tuple(self.webhook_retry_schedule_s),
                jitter=self.webhook_retry_jitter,
                scale=self.webhook_retry_scale,
            ),
        )

    def require_extras(self, *, farm: bool = True) -> None:
        """Raise :class:`~imagerouter.errors.MissingExtra` when these settings name a part
        whose extra is not installed (``farm``: the in-process farm counts), before anything
        starts."""
        if farm and self.farm is not None:
            require("farm", "the in-process farm (serve --farm)")
        if is_postgres_url(self.store):
            require("postgres", 'store = "postgresql://…"')
        if self.state is not None:
            require("redis", 'state = "redis://…"')
        if self.storage.backend == "s3":
            require("s3", '[server.storage] backend = "s3"')

    def job_store(self) -> JobStore:
        """The job store these settings name (``store``, else SQLite in ``data_dir``); use it
        with ``async with``. The server and the ``keys``/``credits`` commands share it.
        ``data_dir`` is made (or tightened to) 0700 for SQLite: the database holds secrets."""
        if self.store:
            return open_store(self.store)
        private_dir(self.data_dir)
        return SQLiteJobStore(
            self.data_dir / "imagerouter.db",
            synchronous=self.sqlite_synchronous,
            batch_max=self.sqlite_batch_max,
        )

    def worker_config(self) -> WorkerConfig:
        """The worker pool's part of these settings."""
        return WorkerConfig(
            workers=self.workers,
            lease_s=self.lease_s,
            heartbeat_s=self.heartbeat_s or self.lease_s / 3,
            sweep_interval_s=self.sweep_interval_s,
            poll_interval_s=self.poll_interval_s,
            shutdown_grace_s=self.shutdown_grace_s,
            max_runs=self.max_runs,
            progress_interval_s=self.progress_interval_s if self.progress_events else None,
            progress_delay_s=self.progress_delay_s,
        )


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    # sorted: a whole table (RATE_LIMITS) comes before the fields that refine it
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _env_value(name, value, _field_kind(ServerSettings, path))
    return values


def _env_value(name: str, value: str, kind: str | None) -> Any:
    """A list or table setting's environment value as JSON (a list may also be ``a,b,c``);
    anything else as the string it is, for pydantic to convert. Raises ConfigError naming the
    variable when a list or table does not parse."""
    text = value.strip()
    if kind == "list":
        if not text.startswith("["):
            return value  # a,b,c: the field's validator splits it
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not a JSON list: {exc}", field=name) from None
        if not isinstance(parsed, list):
            raise ConfigError(f"not a JSON list: {text[:40]!r}", field=name)
        return parsed
    if kind == "table":
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not a JSON table (object): {exc}", field=name) from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"not a JSON table (object): {text[:40]!r}", field=name)
        return parsed
    return value


def _field_kind(model: type[BaseModel], path: list[str]) -> str | None:
    """``"list"`` or ``"table"`` when the setting at ``path`` (lower-case names, as from a
    variable's name) is one, else None (a scalar, or no such setting: validation says so)."""
    annotation: Any = model
    for part in path:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap_optional(annotation)
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return "list"
    if get_origin(annotation) is dict or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "table"
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def load_server_settings(
    config_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ServerSettings:
    """Settings from the ``[server]`` table of ``config_path`` (or ``$IMAGEROUTER_CONFIG``),
    then ``IMAGEROUTER_SERVER_*`` variables, then ``overrides`` (None values are ignored).

    Raises ConfigError naming the file, the field and the reason.
    """
    environ = os.environ if environ is None else environ
    config_path = config_path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    source = "<code>"
    if config_path is not None:
        source = str(config_path)
        raw = dict(load_toml(config_path).get("server", {}))
        data_dir = raw.get("data_dir")
        if isinstance(data_dir, str) and not Path(data_dir).is_absolute():
            raw["data_dir"] = str(Path(config_path).parent / data_dir)
    raw = deep_merge(raw, _env_values(environ))
    given = {k: v for k, v in overrides.items() if v is not None}
    raw = deep_merge(raw, given)
    try:
        return validate(ServerSettings, raw, file=source, prefix="server")
    except ConfigError as exc:
        variable = None if exc.field is None else _env_variable(exc.field, environ, given)
        if variable is None:
            raise
        raise ConfigError(exc.reason, field=variable) from None


def _env_variable(field: str, environ: Mapping[str, str], given: Mapping[str, Any]) -> str | None:
    """The ``IMAGEROUTER_SERVER_*`` variable that set ``field`` (``server.storage.url_ttl_s``:
    ``…_STORAGE__URL_TTL_S``, or the ``…_STORAGE`` table holding it), so that an error names
    the variable rather than the file; None when the file (or an override) set it."""
    parts = field.removeprefix("server.").split(".")
    if parts[0] in given:
        return None
    for end in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:end]).upper()
        if environ.get(name):
            return name
    return None


def load_router_settings(
    config_path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """The core router settings from the same file (its ``[server]`` table rides along)."""
    return load_settings(config_path, environ=environ)


def router_config(config_path: str | Path | None) -> dict[str, Any]:
    """What the config file sets for the router, as a dict to lay over ``farm_router``
    (paths already resolved against the file's directory; empty without a file)."""
    if config_path is None:
        return {}
    settings = load_settings(config_path)
    return settings.model_dump(exclude_unset=True, exclude={"source", "server"})
