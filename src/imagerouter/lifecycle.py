"""The one lifecycle every long-lived resource follows (the asyncio/httpx convention).

Use a resource as ``async with Resource(...) as resource:``; where it must be started and
stopped apart from a ``with`` block, call ``await resource.start()`` and, once done,
``await resource.aclose()``. :class:`AsyncResource` turns those two methods into the async
context manager, so a resource need not hand-write ``__aenter__``/``__aexit__``.
"""

from __future__ import annotations

from typing import Self

__all__ = ["AsyncResource"]


class AsyncResource:
    """A base for resources: override :meth:`start` and :meth:`aclose`; ``async with`` calls
    them. A ``start`` that raises has released what it took (``aclose`` is not called)."""

    async def start(self) -> None:
        """Acquire what the resource needs (connections, tasks, threads)."""

    async def aclose(self) -> None:
        """Release what :meth:`start` acquired."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
