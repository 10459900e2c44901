"""Deliberately wrong plugins fail the kit, and the failure says what went wrong."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from imagerouter_fal import FalProvider

from imagerouter import CallContext, HttpAnswer, InvalidRequest, ProviderError
from imagerouter.testing import Conformance, ConformanceFailure, ConformanceReport, run_conformance

MODEL = "openai/gpt-image-2"


class Permanent429(FalProvider):
    """Treats a 429 as a permanent refusal."""

    def classify(self, answer: HttpAnswer) -> ProviderError:
        if answer.status == 429:
            return InvalidRequest("too many requests", provider=self.name, status=429)
        return super().classify(answer)


class IgnoresRetryAfter(FalProvider):
    """Classifies 429 right but drops the Retry-After."""

    def classify(self, answer: HttpAnswer) -> ProviderError:
        error = super().classify(answer)
        error.retry_after = None
        return error


class SleepsOnTheLoop(FalProvider):
    """Throttles itself with time.sleep."""

    async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
        time.sleep(0.15)  # noqa: ASYNC251 — the blocking call the kit must catch
        return await super().generate(request, ctx)


class LogsItsKey(FalProvider):
    """Logs its request headers at DEBUG and puts them in its errors."""

    def classify(self, answer: HttpAnswer) -> ProviderError:
        error = super().classify(answer)
        error.args = (*error.args, self.auth_headers())
        return error

    async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
        logging.getLogger("leaky").debug("headers: %s", self.auth_headers())
        return await super().generate(request, ctx)


class SwallowsCancellation(FalProvider):
    """Turns a cancelled call into a ProviderError."""

    async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
        try:
            return await super().generate(request, ctx)
        except asyncio.CancelledError:
            raise InvalidRequest("cancelled", provider=self.name) from None


class NeverCancels(FalProvider):
    """Leaves its queued job running at the provider when it gives up."""

    async def _cancel(self, ctx: CallContext, cancel_url: str) -> None:
        return None


def kit(provider_class: type[FalProvider], *checks: str) -> ConformanceReport:
    return run_conformance(provider_class, MODEL, only=checks)


def failure(report: ConformanceReport, check: str) -> str:
    return next(result.message for result in report.failures if result.check == check)


def test_429_as_permanent_error_fails_with_what_it_returned() -> None:
    """A plugin that makes 429 permanent fails every 429 fault, naming what it returned."""
    report = kit(Permanent429, "fault:429", "fault:rate-limit", "fault:500")
    assert [result.check for result in report.failures] == ["fault:429", "fault:rate-limit"]
    assert failure(report, "fault:429") == (
        "fault 429 with Retry-After: 2 → expected RateLimited(retry_after=2.0), "
        "got InvalidRequest(retry_after=None) saying 'fal: too many requests'"
    )


def test_ignoring_retry_after_fails_each_retry_after_form() -> None:
    """A plugin that drops Retry-After fails the seconds, ms and HTTP-date forms."""
    report = kit(IgnoresRetryAfter, "fault:429", "fault:429-ms", "fault:429-date", "fault:429-bare")
    assert [r.check for r in report.failures] == ["fault:429", "fault:429-ms", "fault:429-date"]
    assert failure(report, "fault:429-ms") == (
        "fault 429 with retry-after-ms: 250 → expected RateLimited(retry_after=0.25), "
        "got RateLimited(retry_after=None) saying "
        "'fal: HTTP 429: Rate limit exceeded: too many requests for this key.'"
    )
    assert "got RateLimited(retry_after=None)" in failure(report, "fault:429-date")


def test_blocking_the_event_loop_is_caught() -> None:
    """time.sleep inside generate fails the non-blocking check, naming the call; with a
    threshold below the sleep, the slow callback is named too (a 0.15 s sleep can never hold
    the loop for less than 0.1 s, so this cannot flake the other way)."""
    message = failure(kit(SleepsOnTheLoop, "non-blocking"), "non-blocking")
    assert message.startswith("round trip → expected no blocking call on the event loop, got ")
    assert "time.sleep(0.15)" in message
    report = run_conformance(SleepsOnTheLoop, MODEL, only=["non-blocking"], slow_callback_s=0.1)
    assert "SleepsOnTheLoop.generate()" in failure(report, "non-blocking")


def test_a_leaked_key_is_caught_and_not_repeated() -> None:
    """Logging or raising the key fails the secrets check; the message hides the key itself."""
    with Conformance(LogsItsKey, MODEL) as conformance, pytest.raises(ConformanceFailure) as caught:
        conformance.run_check("secrets")
    message = str(caught.value)
    assert message.startswith("round trip → expected the API key nowhere in logs or exceptions")
    assert "leaky DEBUG: headers: {'Authorization': 'Key <API KEY>'}" in message
    assert conformance.api_key not in message


def test_swallowed_cancellation_and_a_job_left_running_are_caught() -> None:
    """Cancellation must propagate, and the job must be cancelled at the provider."""
    swallowed = failure(kit(SwallowsCancellation, "cancellation"), "cancellation")
    assert swallowed == (
        "task.cancel() while the image is generating → expected asyncio.CancelledError to "
        "propagate, got InvalidRequest(retry_after=None) saying 'fal: cancelled'"
    )
    report = kit(NeverCancels, "deadline", "cancellation")
    assert [r.check for r in report.failures] == ["deadline", "cancellation"]
    assert "got a job left running" in failure(report, "deadline")


def test_pytest_shows_the_failure_for_a_subclass_of_the_base_class(tmp_path: Path) -> None:
    """Through ProviderConformance, pytest reports the fault and what the plugin returned."""
    (tmp_path / "test_wrong.py").write_text(
        textwrap.dedent(
            """
            from imagerouter_fal import FalProvider
            from imagerouter import InvalidRequest
            from imagerouter.testing import FAULTS, ProviderConformance

            class Permanent429(FalProvider):
                def classify(self, answer):
                    if answer.status == 429:
                        return InvalidRequest("slow down", provider=self.name, status=429)
                    return super().classify(answer)

            class TestWrong(ProviderConformance):
                provider_class = Permanent429
                model = "openai/gpt-image-2"
                faults = [fault for fault in FAULTS if fault.id == "429"]
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "fault"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "TestWrong::test_fault_is_classified[429]" in run.stdout
    assert (
        "fault 429 with Retry-After: 2 → expected RateLimited(retry_after=2.0), "
        "got InvalidRequest(retry_after=None) saying 'fal: slow down'"
    ) in run.stdout
