"""Shared pieces of the benchmarks: a farm in its own process, percentiles, result files."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 20.0) -> None:
    """Poll ``url`` until it answers 200, or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextlib.contextmanager
def farm_process(scenario: str | None = None) -> Iterator[dict[str, Any]]:
    """Run the mock farm in its own process (so its CPU is not the benchmark's) on loopback;
    yields its ``GET /_farm/providers`` document."""
    port = free_port()
    command = [sys.executable, "-m", "imagerouter", "farm", "--port", str(port)]
    if scenario:
        command += ["--scenario", scenario]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}/_farm/providers"
        wait_for_http(url)
        with urllib.request.urlopen(url) as response:
            yield json.load(response)
    finally:
        process.terminate()
        process.wait(timeout=10)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` as JSON to ``loadtests/bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
