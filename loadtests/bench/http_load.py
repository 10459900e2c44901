"""Compiled HTTP load generators for the benchmarks: ``wrk`` (closed loop, saturation) and our
``openloop.c`` (constant rate, latency from the intended send time), each pinned to a core.

A Python client saturates long before an aiohttp server does and so flatters it; every HTTP
benchmark drives the server with these instead. ``make bench`` installs Debian's ``wrk``; the
open-loop driver is compiled here with the machine's C compiler on first use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests.bench.common import BUILD_DIR

HERE = Path(__file__).parent
OPENLOOP_SOURCE = HERE / "openloop.c"

#: The cores the benchmarks pin to on a two-core machine: the client on one, the server on
#: the other (``taskset``); on a machine with one core both share it and the figures say so.
CLIENT_CPU = 0
SERVER_CPU = 1


class LoadToolMissing(RuntimeError):
    """A compiled load generator the benchmark needs is not installed."""


def pinned(command: list[str], cpu: int) -> list[str]:
    """``command`` run on core ``cpu`` only, when this machine has it and ``taskset``."""
    if (os.cpu_count() or 1) > cpu and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


def openloop_binary() -> Path:
    """The compiled open-loop driver, rebuilt when its source is newer."""
    binary = BUILD_DIR / "openloop"
    if binary.exists() and binary.stat().st_mtime >= OPENLOOP_SOURCE.stat().st_mtime:
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise LoadToolMissing("no C compiler (cc or gcc) to build loadtests/bench/openloop.c")
    BUILD_DIR.mkdir(exist_ok=True)
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(binary), str(OPENLOOP_SOURCE)],
        check=True,
        timeout=120,
    )
    return binary


def wrk_binary() -> str:
    """Debian's ``wrk`` (``make bench`` installs it)."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadToolMissing("wrk is not installed: `apt-get install wrk` (make bench does)")
    return found


@dataclass(frozen=True)
class Target:
    """One endpoint to load: ``POST``/``GET`` of ``body`` to ``url`` with ``headers``."""

    url: str
    method: str = "POST"
    body: bytes = b""
    headers: Mapping[str, str] | None = None

    def raw_request(self) -> bytes:
        """The whole HTTP/1.1 request as bytes (keep-alive), for the open-loop driver."""
        parts = urlsplit(self.url)
        path = parts.path or "/"
        lines = [f"{self.method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in (self.headers or {}).items()]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def wrk_script(self) -> str:
        """The wrk Lua script that sends this request."""
        lines = [f"wrk.method = {json.dumps(self.method)}", f"wrk.body = {_lua(self.body)}"]
        lines += [
            f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
            for name, value in (self.headers or {}).items()
        ]
        return "\n".join(lines) + "\n"


def _lua(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def wrk(target: Target, *, connections: int = 50, duration_s: float = 10.0) -> dict[str, Any]:
    """Saturate ``target`` with ``wrk -t1`` pinned to the client core; requests/s and latency."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(target.wrk_script())
    try:
        command = pinned(
            [
                wrk_binary(),
                "-t1",
                f"-c{connections}",
                f"-d{duration_s:g}s",
                "--latency",
                "-s",
                script.name,
                target.url,
            ],
            CLIENT_CPU,
        )
        out = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=duration_s + 60
        ).stdout
    finally:
        os.unlink(script.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = {f"p{q}_ms": _ms(value) for q, value in re.findall(r"\s+(50|90|99)%\s+(\S+)", out)}
    return {
        "connections": connections,
        "duration_s": duration_s,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
        **latency,
    }


def open_loop(
    target: Target, *, rate: float, duration_s: float, connections: int = 256, drain_s: float = 5.0
) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``duration_s`` at constant rate; latency percentiles."""
    parts = urlsplit(target.url)
    with tempfile.NamedTemporaryFile("wb", delete=False) as request:
        request.write(target.raw_request())
    try:
        command = pinned(
            [
                str(openloop_binary()),
                parts.hostname or "127.0.0.1",
                str(parts.port or 80),
                request.name,
                f"{rate:g}",
                f"{duration_s:g}",
                str(connections),
                f"{drain_s:g}",
            ],
            CLIENT_CPU,
        )
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + drain_s + 30,
        ).stdout
    finally:
        os.unlink(request.name)
    return json.loads(out)
