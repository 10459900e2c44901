"""What the kit reports: a failure (an ``AssertionError`` whose message says what was done, what
was expected and what the plugin did), a skip, and the report of a whole run."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckResult", "CheckSkipped", "ConformanceFailure", "ConformanceReport"]


class ConformanceFailure(AssertionError):
    """A plugin broke the contract; the message says how."""


class CheckSkipped(Exception):
    """A check does not apply to this plugin (the message says why)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``passed``, ``failed`` or ``skipped``, and why."""

    check: str
    status: str
    message: str = ""


@dataclass
class ConformanceReport:
    """Every check's result, in order."""

    provider: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that failed."""
        return [result for result in self.results if result.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures

    def __str__(self) -> str:
        lines = [f"conformance of provider {self.provider!r}:"]
        for result in self.results:
            note = f": {result.message}" if result.message else ""
            lines.append(f"  {result.status:7} {result.check}{note}")
        return "\n".join(lines)
