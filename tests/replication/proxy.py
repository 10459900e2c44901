"""A loopback TCP proxy with two switches: ``cut()`` drops every connection and refuses new
ones (Redis went away), ``stall()`` keeps connections open but forwards nothing (Redis hangs);
``restore()`` undoes either. Only loopback."""

from __future__ import annotations

import asyncio
import contextlib

from imagerouter import AsyncResource


class TcpProxy(AsyncResource):
    """Forwards 127.0.0.1:<port> to ``host:port`` until cut."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0
        self.is_cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, db: int = 0) -> str:
        """A ``redis://`` URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Close every open connection (both ends) and refuse new ones until restored."""
        self.is_cut = True
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def stall(self) -> None:
        """Hold every byte in both directions, connections left open, until restored."""
        self._flowing.clear()

    def restore(self) -> None:
        """Let connections and bytes through again."""
        self.is_cut = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                await self._flowing.wait()
                if self.is_cut:
                    break
                dst.write(data)
                await dst.drain()
        dst.close()
        self._writers.discard(dst)
