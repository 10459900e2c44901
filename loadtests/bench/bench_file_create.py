"""Benchmark of what local output storage asks of the filesystem: one small file a job.

Run: ``python -m loadtests.bench.bench_file_create`` (a few seconds; prints the figures and
writes ``loadtests/bench/results/file_create.json``).

Each round writes ``--files`` files of ``--bytes`` bytes the way
:class:`~imagerouter.storage.LocalStorage` does (:class:`~imagerouter.storage.local.FileWriter`:
an unnamed file written in the directory and then named, on Linux), in batches of 64 as its
writer threads take them, into a fresh directory of each place, the rounds after deletes last;
the figure is each place's median CPU (user and system) per file. The places:

* the data disk: the benchmarks' scratch directory (``common.scratch_dir``, where
  ``bench_end_to_end`` keeps its server's data too), each new directory in a block group of
  its own;
* the same, each file written the other way (a temporary file created exclusively, written and
  renamed into place: local storage's way where unnamed files cannot be had);
* the same, ``--settle-s`` after ``--deleted`` files were written and deleted beside the new
  directory (a test suite's or a benchmark's clean-up): on an ext4 without a journal, as this
  machine's root is, the kernel looks for a new file's inode past every inode of its block
  group deleted in the last minute (six while their inode table block is unwritten), one at
  a time (``recently_deleted()`` in ``fs/ext4/ialloc.c``), so that cost grows with the deletes;
* ``/dev/shm`` (memory).

The end to end benchmark's stored-image stage is these writes plus a download; when the disk's
figure is large, so is that stage's system CPU. Directories are removed at the end, so that
no round measures this benchmark's own deletes but the one meant to.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from imagerouter.storage.local import FileWriter
from loadtests.bench.common import scratch_dir, write_results

BATCH = 64


def _write_all(paths: list[tuple[str, bytes]], unnamed: bool = True) -> None:
    """Write the files in batches of ``BATCH``, as local storage's writer threads do:
    unnamed and then named, or (``unnamed`` False) through temporary files renamed."""
    writer = FileWriter()
    writer.unnamed = writer.unnamed and unnamed
    for start in range(0, len(paths), BATCH):
        errors = writer.write(paths[start : start + BATCH])
        if any(errors):
            raise RuntimeError(f"a write failed: {next(e for e in errors if e)}")


def one_round(
    where: str,
    files: int,
    size: int,
    *,
    deleted: int = 0,
    settle_s: float = 0.0,
    unnamed: bool = True,
) -> dict[str, Any]:
    """Write ``files`` files into a new directory under ``where``; µs of CPU per file, and
    the directory (left for the caller to remove: a removal here would slow the next round).
    ``deleted``: first write and delete that many files beside it, then wait ``settle_s``
    (neither measured). ``unnamed``: as local storage writes them where it can (False:
    through temporary files renamed, its way elsewhere)."""
    root = tempfile.mkdtemp(prefix="bench-files-", dir=where)
    data = os.urandom(size)
    paths = [(f"{root}/hour/job_{n:08d}-0.png", data) for n in range(files)]
    if deleted:
        _write_all([(f"{root}/gone/job_{n:08d}-0.png", data) for n in range(deleted)])
        shutil.rmtree(f"{root}/gone")
        time.sleep(settle_s)
    before, wall = _thread_cpu(), time.perf_counter()
    _write_all(paths, unnamed)
    after, wall = _thread_cpu(), time.perf_counter() - wall
    per = 1e6 / files
    return {
        "user_us": (after[0] - before[0]) * per,
        "system_us": (after[1] - before[1]) * per,
        "wall_us": wall * per,
        "directory": root,
    }


def _thread_cpu() -> tuple[float, float]:
    """This thread's user and system CPU seconds, to the microsecond (``os.times`` counts
    10 ms ticks: 3,000 files of 13 µs are 4 of them, a figure good to a quarter)."""
    usage = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return usage.ru_utime, usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print each place's medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="Files per round.")
    parser.add_argument("--bytes", type=int, default=500, help="Bytes per file.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per place.")
    parser.add_argument(
        "--deleted", type=int, default=10000, help="Files deleted before an after-deletes round."
    )
    parser.add_argument(
        "--settle-s", type=float, default=5.0, help="Wait after the deletes, before the round."
    )
    args = parser.parse_args(argv)
    disk = scratch_dir()
    # the rounds after deletes come last, and every directory is removed only at the end:
    # the other places' figures are not those of this benchmark's own deletions
    places = {"data disk": (disk, 0, True), "data disk, files renamed": (disk, 0, False)}
    if Path("/dev/shm").is_dir():
        places["memory (/dev/shm)"] = ("/dev/shm", 0, True)
    places["data disk, after deletes"] = (disk, args.deleted, True)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in places}
    try:
        for name, (where, deleted, unnamed) in places.items():
            for _ in range(args.rounds):
                figures = one_round(
                    where,
                    args.files,
                    args.bytes,
                    deleted=deleted,
                    settle_s=args.settle_s,
                    unnamed=unnamed,
                )
                rounds[name].append(figures)
    finally:
        for done in rounds.values():
            for figures in done:
                shutil.rmtree(figures.pop("directory"), ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "file_create",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "files_per_round": args.files,
        "bytes_per_file": args.bytes,
        "places": {},
    }
    for name, (where, deleted, unnamed) in places.items():
        medians = {
            key: round(statistics.median(r[key] for r in rounds[name]), 1)
            for key in ("user_us", "system_us", "wall_us")
        }
        result["places"][name] = {
            "directory": where,
            "files_deleted_first": deleted,
            "unnamed_files": unnamed,
            **medians,
            "rounds": rounds[name],
        }
        print(
            f"{name:<26} ({where}): {medians['user_us']} µs user + {medians['system_us']} µs "
            f"system a file (median of {args.rounds}; wall {medians['wall_us']} µs)"
        )
    print(f"wrote {write_results('file_create', result)}")


if __name__ == "__main__":
    main()
