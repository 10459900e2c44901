"""Loopback networking for tests: the load tests' own free port (outside the ephemeral range)."""

from __future__ import annotations

from loadtests.bench.common import free_port

__all__ = ["free_port"]
