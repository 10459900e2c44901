"""Stopping the child processes the load tests and benchmarks start (servers, farms, Locust)."""

from __future__ import annotations

import contextlib
import signal
import subprocess

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM, wait ``grace_s`` for a graceful exit, then SIGKILL; the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
    return process.returncode
