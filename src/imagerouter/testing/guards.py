"""Watching one plugin call: blocking calls on its event loop, and everything it logs.

:class:`Watch` is active around a call that runs on the current thread's event loop:

- ``time.sleep`` and blocking socket operations (``connect``/``recv``/``send``/``sendall``,
  ``getaddrinfo``) made on that thread while its loop runs are recorded; so is every callback
  asyncio's debug mode reports as slower than ``slow_callback_s``;
- every log record emitted on that thread, at any level, is kept as text (message and
  traceback) so the kit can look for the API key in it.

Records and calls from other threads (the farm's) are ignored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["Watch"]

_SOCKET_METHODS = ("connect", "connect_ex", "recv", "recv_into", "send", "sendall", "accept")
#: asyncio's debug-mode report of a callback slower than ``slow_callback_duration``.
_SLOW_CALLBACK = re.compile(r"Executing (.+) took (\d+(?:\.\d+)?) seconds", re.DOTALL)


class _Recorder(logging.Handler):
    """Keeps the text of every record emitted on one thread."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.watch.thread_id:
            return
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is still text worth scanning
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += "\n" + self._formatter.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        self.watch.log_texts.append(f"{record.name} {record.levelname}: {text}")
        # by its text, not its format string: a filter of another library may have rewritten
        # the record (litellm, once imported, redacts the asyncio logger's records in place)
        if record.name == "asyncio" and (slow := _SLOW_CALLBACK.match(text)) is not None:
            handle, seconds = slow.group(1), float(slow.group(2))
            self.watch.blocking.append(
                f"a callback held the event loop for {seconds:.3f} s: {handle}"
            )


class Watch:
    """Records blocking calls and log text from the current thread while active."""

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()
        #: Human descriptions of each blocking call seen.
        self.blocking: list[str] = []
        #: Every log record emitted on this thread, as text.
        self.log_texts: list[str] = []

    def __enter__(self) -> Watch:
        self._stack = self._patches()
        self._stack.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def _on_loop(self) -> bool:
        """True when called on the watched thread while its event loop runs."""
        return threading.get_ident() == self.thread_id and asyncio._get_running_loop() is not None

    @contextmanager
    def _patches(self) -> Iterator[None]:
        root = logging.getLogger()
        recorder = _Recorder(self)
        old_level = root.level
        originals: list[tuple[Any, str, Any]] = [(time, "sleep", time.sleep)]
        originals += [(socket, "getaddrinfo", socket.getaddrinfo)]
        own = {name: socket.socket.__dict__.get(name) for name in _SOCKET_METHODS}
        root.addHandler(recorder)
        root.setLevel(logging.DEBUG)
        time.sleep = self._sleep(time.sleep)  # type: ignore[assignment]
        socket.getaddrinfo = self._getaddrinfo(socket.getaddrinfo)  # type: ignore[assignment]
        for name in _SOCKET_METHODS:
            setattr(socket.socket, name, self._socket_method(name, getattr(socket.socket, name)))
        try:
            yield
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)
            for name, method in own.items():  # put back what socket.socket itself defined
                if method is None:
                    delattr(socket.socket, name)
                else:
                    setattr(socket.socket, name, method)
            root.setLevel(old_level)
            root.removeHandler(recorder)

    def _sleep(self, original: Callable[[float], None]) -> Callable[[float], None]:
        @functools.wraps(original)
        def sleep(seconds: float) -> None:
            if self._on_loop():
                self.blocking.append(f"time.sleep({seconds!r}) on the event loop")
            original(seconds)

        return sleep

    def _getaddrinfo(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if self._on_loop():
                self.blocking.append(
                    f"blocking DNS lookup socket.getaddrinfo({host!r}) on the loop"
                )
            return original(host, *args, **kwargs)

        return getaddrinfo

    def _socket_method(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        watch = self

        @functools.wraps(original)
        def method(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if sock.gettimeout() != 0.0 and watch._on_loop():
                watch.blocking.append(f"blocking socket.{name}() on the event loop")
            return original(sock, *args, **kwargs)

        return method
