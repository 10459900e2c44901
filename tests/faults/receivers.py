"""Webhook receivers that hang: loopback listeners that accept every connection, read what
is sent, and never answer. They count the connections they hold (now and at most)."""

from __future__ import annotations

import asyncio
import contextlib

from imagerouter import AsyncResource

__all__ = ["HangingTargets"]


class HangingTargets(AsyncResource):
    """``count`` listeners on loopback (one port each: each is a target of its own) that
    accept and never answer; ``urls`` are their webhook URLs."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.urls: list[str] = []
        #: Connections held now, at most at once, and accepted in all.
        self.open = 0
        self.peak = 0
        self.accepted = 0
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        for _ in range(self.count):
            server = await asyncio.start_server(self._hold, "127.0.0.1", 0, backlog=64)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.urls.append(f"http://127.0.0.1:{port}/hook")

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self._writers.add(writer)
        try:
            while await reader.read(65536):  # until the sender gives up and closes
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
