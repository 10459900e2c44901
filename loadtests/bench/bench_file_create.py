"""Benchmark of what local output storage asks of the filesystem: one small file a job.

Run: ``python -m loadtests.bench.bench_file_create`` (a few seconds; prints the figures and
writes ``loadtests/bench/results/file_create.json``).

Each round writes ``--files`` files of ``--bytes`` bytes the way
:class:`~imagerouter.storage.LocalStorage` does (a temporary file created exclusively, written,
renamed into place, in one directory), in batches of 64 as its writer threads take them, into a
fresh directory of each place: the data disk (the default temporary directory, where
``bench_end_to_end`` keeps its server's data) and ``/dev/shm`` (memory). Rounds alternate
between the places; the figure is each place's median CPU (user and system) per file. The end
to end benchmark's stored-image stage is these writes plus a download; when the disk's figure
is large, so is that stage's system CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from imagerouter.storage.local import _write_files
from loadtests.bench.common import write_results

BATCH = 64


def one_round(where: str, files: int, size: int) -> dict[str, float]:
    """Write ``files`` files into a new directory under ``where``; µs of CPU per file."""
    root = Path(tempfile.mkdtemp(prefix="bench-files-", dir=where))
    data = os.urandom(size)
    paths = [(f"{root}/hour/job_{n:08d}-0.png", data) for n in range(files)]
    try:
        before, wall = os.times(), time.perf_counter()
        for start in range(0, files, BATCH):
            errors = _write_files(paths[start : start + BATCH])
            if any(errors):
                raise RuntimeError(f"a write failed: {next(e for e in errors if e)}")
        after, wall = os.times(), time.perf_counter() - wall
    finally:
        shutil.rmtree(root)
    per = 1e6 / files
    return {
        "user_us": (after.user - before.user) * per,
        "system_us": (after.system - before.system) * per,
        "wall_us": wall * per,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print each place's medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="Files per round.")
    parser.add_argument("--bytes", type=int, default=500, help="Bytes per file.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per place.")
    args = parser.parse_args(argv)
    places = {"data disk": tempfile.gettempdir()}
    if Path("/dev/shm").is_dir():
        places["memory (/dev/shm)"] = "/dev/shm"
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in places}
    for _ in range(args.rounds):
        for name, where in places.items():
            rounds[name].append(one_round(where, args.files, args.bytes))
    result: dict[str, Any] = {
        "benchmark": "file_create",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "files_per_round": args.files,
        "bytes_per_file": args.bytes,
        "places": {},
    }
    for name, where in places.items():
        medians = {
            key: round(statistics.median(r[key] for r in rounds[name]), 1)
            for key in ("user_us", "system_us", "wall_us")
        }
        result["places"][name] = {"directory": where, **medians, "rounds": rounds[name]}
        print(
            f"{name:<18} ({where}): {medians['user_us']} µs user + {medians['system_us']} µs "
            f"system a file (median of {args.rounds}; wall {medians['wall_us']} µs)"
        )
    print(f"wrote {write_results('file_create', result)}")


if __name__ == "__main__":
    main()
