"""The in-process backend: each replica on its own (the default; nothing to connect to).

It has the same lifecycle and ``status()`` as :class:`~imagerouter.state.RedisState`, so a
server can hold either and report it on ``/readyz`` the same way.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

__all__ = ["LocalState"]


class LocalState:
    """Resilience state kept in this process only: always healthy, never shared."""

    healthy = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def status(self) -> dict[str, Any]:
        """``{"backend": "local", "healthy": True}``."""
        return {"backend": "local", "healthy": True}
