"""Structured logs: one JSON object per line (or readable text on a terminal), with the job id
of the task that logged, and secrets scrubbed from every message.

Prompts are never logged above DEBUG; API keys, provider keys and webhook secrets never at all
(the scrubber is the last line of defence, not the first: nothing logs them on purpose).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from imagerouter.generation import AttemptEvent

__all__ = ["JobIdFilter", "configure_logging", "current_job_id", "job_context", "log_attempt"]

log = logging.getLogger("imagerouter.attempts")

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_SECRETS = re.compile(
    r"(?i)(bearer\s+|key\s+)[A-Za-z0-9._:\-]{6,}"
    r"|\b(sk|ir|whsec|r8)_[A-Za-z0-9_\-]{6,}"
)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def current_job_id() -> str | None:
    """The id of the job the running task works on, or None.

    :func:`job_context` when it is set; else the name of the current task,
    which the worker pool sets to the job id (``job_…``).
    """
    job_id = _job_id.get()
    if job_id is not None:
        return job_id
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    name = task.get_name() if task is not None else ""
    return name if name.startswith("job_") else None


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every log line written inside carries ``job_id`` (per asyncio task, via a contextvar)."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def scrub(text: str) -> str:
    """``text`` with anything that looks like a key or secret replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


class JobIdFilter(logging.Filter):
    """Gives each record the job id of the task that logged it (``job_id``), unless it has
    one. It changes nothing else of the record: the handlers share it (a test's capture, the
    conformance kit's watch), so redaction is the formatters' (:func:`scrub` on their text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, job_id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for people at a terminal, extra fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and v is not None
        )
        line = f"{stamp} {record.levelname:<7} {record.name}: {scrub(record.getMessage())}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "text"] = "auto", stream: Any = None
) -> logging.Handler:
    """Send imagerouter's (and aiohttp's) logs to ``stream`` (stderr) at ``level``: JSON lines,
    or text when ``fmt`` is ``auto`` and the stream is a terminal. Returns the handler."""
    stream = stream or sys.stderr
    as_text = fmt == "text" or (fmt == "auto" and getattr(stream, "isatty", lambda: False)())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if as_text else JsonFormatter())
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_imagerouter", False)]:
        root.removeHandler(old)
    handler._imagerouter = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
    return handler


def log_attempt(event: AttemptEvent) -> None:
    """Listener for ``router.attempts``: one line per attempt (skips at DEBUG)."""
    attempt = event.attempt
    level = logging.DEBUG if attempt.outcome == "skipped" else logging.INFO
    if attempt.outcome == "error" and attempt.error_class != "RateLimited":
        level = logging.WARNING
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "attempt %s",
        attempt.outcome,
        extra={
            "model": event.model,
            "provider": attempt.provider,
            "outcome": attempt.outcome,
            "latency_ms": attempt.latency_ms,
            "error_class": attempt.error_class,
            "status": attempt.status,
            "retry_after": attempt.retry_after,
            "reason": attempt.reason,
        },
    )
