"""Shared pieces of the benchmarks: a farm in its own process, CPU time of a process, py-spy
profiles, percentiles, result files."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtests.processes import stop_process

#: The project's checkout (``make`` installs it editable).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(__file__).parent / "results"
#: What the benchmarks build and keep between runs (ignored by git): the open-loop driver,
#: other interpreters' venvs, other revisions' code, and the scratch directory.
BUILD_DIR = Path(__file__).parent / ".build"
SCRATCH_DIR = BUILD_DIR / "tmp"


def scratch_dir() -> str:
    """Where a benchmark keeps the files it writes and then deletes (a server's data dir, a
    round of test files): ``$TMPDIR`` when set, else ``loadtests/bench/.build/tmp``, marked as
    the top of a directory hierarchy (``chattr +T``), so that ext4 places each new directory
    under it in a block group of its own, away from the deletes of earlier runs and of the test
    suite (under ``/tmp``). On an ext4 without a journal, as this machine's root is, creating a
    file costs ten to forty times as much for minutes after thousands of files were deleted in
    its block group (see ``bench_file_create``); a long-running server's data dir sees no such
    churn. Elsewhere the flag is not supported and is left unset."""
    if os.environ.get("TMPDIR"):
        return os.environ["TMPDIR"]
    if not SCRATCH_DIR.is_dir():
        SCRATCH_DIR.mkdir(parents=True)
        if shutil.which("chattr"):
            subprocess.run(["chattr", "+T", str(SCRATCH_DIR)], capture_output=True, check=False)
    return str(SCRATCH_DIR)


#: Linux's range of ephemeral ports (outgoing connections, binds to port 0).
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the kernel's ephemeral range: a port
    taken from that range (a bind to port 0) could be handed out again, to an outgoing
    connection or to another bind to port 0 (a server's in-process farm), before the process
    meant to listen on it binds it ("address already in use", seen in CI)."""
    try:
        low = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    rng = random.SystemRandom()
    for _ in range(50 if low > 20_000 else 0):
        port = rng.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def farm_server(scenario: str | None = None, cpu: int | None = None) -> Iterator[tuple[dict, int]]:
    """Run the mock farm in its own process (so its CPU is not the benchmark's) on loopback,
    pinned to core ``cpu`` when given; yields its ``GET /_farm/providers`` document and pid."""
    port = free_port()
    command = [sys.executable, "-m", "imagerouter", "farm", "--port", str(port)]
    if scenario:
        command += ["--scenario", scenario]
    if cpu is not None and (os.cpu_count() or 1) > cpu and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}/_farm/providers"
        wait_for_http(url)
        with urllib.request.urlopen(url) as response:
            yield json.load(response), process.pid
    finally:
        stop_process(process, 10)


@contextlib.contextmanager
def farm_process(scenario: str | None = None) -> Iterator[dict[str, Any]]:
    """Run the mock farm in its own process (so its CPU is not the benchmark's) on loopback;
    yields its ``GET /_farm/providers`` document."""
    with farm_server(scenario) as (doc, _):
        yield doc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (``/proc/<pid>/stat``)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int, tid: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds so far of process ``pid`` (or of its thread ``tid``)."""
    where = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(where).read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of ``pid``'s main thread (an imagerouter server's
    event loop) and of its other threads together (the SQLite writer, the checkpointer and
    the executors: Python 3.11 gives threads no names the kernel shows)."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"event_loop": 0.0, "other_threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            which = "event_loop" if task.name == str(pid) else "other_threads"
            totals[which] += (int(fields[11]) + int(fields[12])) / tick
    return totals


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches so far of ``pid``, over all its threads (a
    thread that has ended no longer counts: read it while the process runs)."""
    voluntary = involuntary = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


# --- py-spy profiles ----------------------------------------------------------------------------


def py_spy() -> str:
    """The py-spy beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def start_py_spy(
    pid: int, duration_s: float, out: Path, *, gil: bool = False
) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``duration_s`` at 250 Hz; raw folded stacks go to ``out``.
    ``gil``: only the thread holding the GIL is sampled (where the Python CPU goes)."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{duration_s:g}",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_folded(out: Path, top_self: int = 20, top_inclusive: int = 40) -> dict[str, Any]:
    """The top frames of a folded-stack file by self and inclusive share of the samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += samples
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples

    def share(n: int) -> float:
        return round(100 * n / max(total, 1), 1)

    return {
        "samples": total,
        "folded_stacks": str(out.relative_to(RESULTS_DIR.parent.parent.parent)),
        "self_pct": {name: share(n) for name, n in own.most_common(top_self)},
        "inclusive_pct": {name: share(n) for name, n in inclusive.most_common(top_inclusive)},
    }


def _frame(frame: str) -> str:
    """``function (path/to/pkg/module.py:line)`` → ``function (pkg/module.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


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


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | list) else str(value).lower()


def farm_server_config(
    path: Path, farm: dict[str, Any], server: dict[str, Any], storage: str = "none"
) -> Path:
    """Write an ``imagerouter serve`` config for a benchmark: ``[server]`` from ``server``,
    ``storage`` as the output backend, API rate limits lifted, every provider the farm serves
    pointed at it (``farm``: its ``GET /_farm/providers`` document) and the others disabled."""
    from imagerouter.plugins import load_plugins
    from mockproviders.bridge import FARM_OPTIONS

    lines = ["[server]", *(f"{k} = {_toml(v)}" for k, v in server.items())]
    lines += ["[server.storage]", f"backend = {_toml(storage)}"]
    for policy in ("generate", "read"):
        lines += [f"[server.rate_limits.{policy}]", "rate_per_s = 1000000", "burst = 1000000"]
    for name in load_plugins().providers:
        if name not in farm["providers"]:
            lines += [f'[providers."{name}"]', "enabled = false"]
    options = ", ".join(f"{k} = {v}" for k, v in FARM_OPTIONS.items())
    for name, entry in farm["providers"].items():
        lines += [
            f'[providers."{name}"]',
            f"base_url = {_toml(entry['base_url'])}",
            f'api_key = "farm-key-{name}"',
            f"options = {{ {options} }}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path
