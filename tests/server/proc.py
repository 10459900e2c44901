"""A real ``imagerouter serve --farm`` process for tests: start, wait, signal, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.net import free_port

SERVE = [sys.executable, "-m", "imagerouter"]


def write_scenario(path: Path, generation_ms: float) -> Path:
    """A farm scenario where every provider takes ``generation_ms`` to make an image."""
    lines = ['description = "test"', "seed = 1"]
    for name in ("openai", "fal", "wavespeed"):
        lines += [f"[providers.{name}]", "latency_ms = 2", f"generation_ms = {generation_ms}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(path: Path, **server: object) -> Path:
    """A config file with a ``[server]`` table (small leases, generous limits)."""
    values: dict[str, object] = {
        "workers": 8,
        "lease_s": 1.0,
        "heartbeat_s": 0.25,
        "sweep_interval_s": 0.25,
        "poll_interval_s": 0.1,
        "shutdown_grace_s": 1.0,
        "auth_cache_s": 0,
        **server,
    }
    lines = ["[server]"]
    for key, value in values.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    lines += [
        "[server.rate_limits.generate]",
        "rate_per_s = 10000",
        "burst = 10000",
        "[server.rate_limits.read]",
        "rate_per_s = 10000",
        "burst = 10000",
        "[router]",
        "deadline_s = 60",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, config: Path, data_dir: Path) -> str:
    """Run an ``imagerouter`` server command; its stdout."""
    done = subprocess.run(
        [*SERVE, *args, "--config", str(config), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class ServerProcess:
    """``imagerouter serve --farm SCENARIO`` on a free port, logging to a file."""

    def __init__(self, config: Path, data_dir: Path, scenario: Path, log: Path) -> None:
        self.config, self.data_dir, self.scenario, self.log = config, data_dir, scenario, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and wait (bounded) until /readyz answers 200."""
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *SERVE,
                    "serve",
                    "--config",
                    str(self.config),
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--farm",
                    str(self.scenario),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout_s} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait (bounded) for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def ensure_stopped(self) -> None:
        """Kill the process if it still runs (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
