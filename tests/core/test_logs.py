"""Structured logs: JSON lines with the job id, readable text on demand, no secrets."""

from __future__ import annotations

import io
import json
import logging

from imagerouter.generation import Attempt, AttemptEvent
from imagerouter.logs import configure_logging, job_context, log_attempt


def test_json_lines_carry_job_id_and_attempt_fields() -> None:
    """Each attempt is one JSON object with the job id of the task that made it."""
    stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream)
    try:
        with job_context("job_abc"):
            log_attempt(
                AttemptEvent(
                    "gpt-image-2",
                    Attempt(
                        "fal",
                        "error",
                        latency_ms=12.5,
                        error_class="ProviderUnavailable",
                        status=503,
                    ),
                )
            )
    finally:
        logging.getLogger().removeHandler(handler)
    entry = json.loads(stream.getvalue().strip())
    assert entry["job_id"] == "job_abc"
    assert (entry["provider"], entry["outcome"], entry["status"]) == ("fal", "error", 503)
    assert entry["level"] == "warning"


def test_secrets_never_reach_the_log() -> None:
    """Bearer tokens and key-like strings are redacted from messages and arguments."""
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "text", stream)
    try:
        logging.getLogger("imagerouter.test").info(
            "calling with Authorization: Bearer sk-live-1234567890 and %s", "whsec_abcdefghijk"
        )
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "1234567890" not in text
    assert "abcdefghijk" not in text
    assert "[redacted]" in text


def test_skipped_attempts_stay_below_info() -> None:
    """Skips are DEBUG: a busy router does not flood INFO with them."""
    stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream)
    try:
        log_attempt(AttemptEvent("m", Attempt("fal", "skipped", reason="breaker open")))
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue() == ""


def test_the_log_handler_leaves_records_as_other_handlers_get_them() -> None:
    """Redaction is in the formatter's text, not in the shared record: a handler after ours
    (pytest's capture, the conformance kit's watch of asyncio's slow-callback message) still
    sees the format string and its arguments. The record was rewritten in place before, and
    the kit's blocking check failed after any test that left our handler installed."""
    stream = io.StringIO()
    seen: list[tuple[object, object]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.msg, record.args))

    ours = configure_logging("DEBUG", "json", stream)
    theirs = Keep()
    logging.getLogger().addHandler(theirs)
    try:
        logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Handle x>", 0.15)
        logging.getLogger("imagerouter.test").info("token %s", "Bearer sk-live-1234567890")
    finally:
        logging.getLogger().removeHandler(ours)
        logging.getLogger().removeHandler(theirs)
    assert seen == [
        ("Executing %s took %.3f seconds", ("<Handle x>", 0.15)),
        ("token %s", ("Bearer sk-live-1234567890",)),
    ]
    assert "1234567890" not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()
