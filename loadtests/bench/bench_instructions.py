"""Benchmark of the server's work a job counted in instructions: the figure that does not move
with the host.

Run: ``python -m loadtests.bench.bench_instructions`` (about 2 minutes; prints the figures and
writes ``loadtests/bench/results/instructions.json``). It needs valgrind (``make bench``
installs Debian's). ``--against REV`` sets the working tree against a git revision: that
revision's ``src`` and ``plugins`` are unpacked under ``loadtests/bench/.build/`` and put first
on the ``PYTHONPATH`` of its runs (the farm, the receiver and the server), the two alternating
``--repeat`` times; it prints each side's median and their ratio and writes
``results/instructions-against.json``.

The whole path of ``bench_end_to_end`` (submit, the fal queue at the farm, the stored image,
the signed webhook, on SQLite), with the server run under valgrind's callgrind, which counts
the instructions each of its threads executes. On this shared two-core VM the timed figures
of a busy machine moved by up to a third between runs minutes apart, with the code unchanged;
the instructions a job of thirteen runs over the same hour were within 4 % of each other, and
three runs in a row within 1 %. So this is the instrument for "did this change make a job
cheaper for the server", and the timed benchmarks remain the figures of speed.

* Method: the farm and the receiver as in ``bench_end_to_end``; the server under ``valgrind
  --tool=callgrind --separate-threads=yes`` (some fifty times slower). A warm-up of
  ``--warm-up`` jobs, every one final and delivered; the counters zeroed
  (``callgrind_control -z``); ``--jobs`` jobs offered at ``--rate`` a second (10: well under
  what the slowed server carries, so that its batching, one job a turn of the loop and a
  transaction or two, is the same from run to run); every job final and every webhook
  delivered; the counters dumped (``callgrind_control -d``) and divided by the jobs.
* Per thread: the event loop's (valgrind's thread 1), the SQLite writer's (the thread whose
  own instructions are most in ``libsqlite3``), and the rest together (the checkpointer, the
  file writers). For each, the share of its instructions in each library: the interpreter,
  SQLite, libc, uvloop, OpenSSL, pydantic-core.
* What it does not count: the kernel's work (system calls, about a fifth of the server's CPU
  in the timed runs), and time: an instruction of the interpreter's loop and one of SQLite's
  B-tree code do not take the same time, and callgrind counts each iteration of a ``rep
  stosb`` (SQLite zeroing a fresh 4 KiB page) as one instruction. At this rate a job shares
  its loop turns and its transactions with fewer jobs than at saturation, so a job counts
  more here than it costs in a saturated run: compare this figure with itself, run to run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from loadtests.bench import bench_end_to_end as e2e
from loadtests.bench.common import BUILD_DIR, PROJECT_ROOT, scratch_dir, write_results
from loadtests.bench.http_load import CLIENT_CPU, LoadToolMissing, Target, open_loop

__all__ = [
    "compare",
    "libraries",
    "main",
    "revision_env",
    "revision_tree",
    "self_costs",
    "thread_roles",
]

#: Libraries named in the split, by the start of their file name (the rest are "other").
LIBRARIES = {
    "python3": "interpreter",
    "libpython3": "interpreter",
    "libsqlite3": "SQLite",
    "libc.so": "libc",
    "loop.cpython": "uvloop",
    "libcrypto": "OpenSSL",
    "_pydantic_core": "pydantic-core",
}

_NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")


def self_costs(lines: Iterable[str]) -> collections.Counter[tuple[str, str]]:
    """Each function's own instructions in one callgrind dump, by (object file, function).

    The format (valgrind's callgrind format spec): ``ob=`` and ``fn=`` name the object and the
    function the cost lines below belong to, both possibly compressed to ``(id)`` after their
    first mention; ``calls=`` says that the next cost line is a call's inclusive cost, which
    is the callee's and is not counted here; a cost line is a position and then the events
    (here one, ``Ir``)."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}

    def name(kind: str, text: str) -> str:
        match = _NAME.match(text)
        if match is None:
            return text
        if match.group(2):
            names[kind][match.group(1)] = match.group(2)
        return names[kind].get(match.group(1), text)

    costs: collections.Counter[tuple[str, str]] = collections.Counter()
    obj = function = ""
    call_cost_next = False
    for line in lines:
        if not line or line == "\n":
            continue
        head = line[:4]
        if head.startswith("ob="):
            obj = name("ob", line[3:].strip())
        elif head.startswith("fn="):
            function = name("fn", line[3:].strip())
        elif head == "cob=":
            name("ob", line[4:].strip())
        elif head == "cfn=":
            name("fn", line[4:].strip())
        elif line.startswith("calls="):
            call_cost_next = True
        elif line[0].isdigit() or line[0] in "+-*":
            if call_cost_next:
                call_cost_next = False
                continue
            parts = line.split()
            if len(parts) >= 2:
                costs[(obj, function)] += int(parts[1])
    return costs


def libraries(costs: collections.Counter[tuple[str, str]]) -> dict[str, int]:
    """Instructions by library (:data:`LIBRARIES`), most first."""
    totals: collections.Counter[str] = collections.Counter()
    for (obj, _), count in costs.items():
        base = obj.rsplit("/", 1)[-1]
        label = next((v for k, v in LIBRARIES.items() if base.startswith(k)), "other")
        totals[label] += count
    return dict(totals.most_common())


def thread_roles(
    dumps: dict[int, collections.Counter[tuple[str, str]]],
) -> dict[str, collections.Counter[tuple[str, str]]]:
    """The threads' own instructions as the event loop's (valgrind's thread 1), the SQLite
    writer's (the thread, not the loop's, with the most of its own in SQLite) and the other
    threads' together."""
    sqlite = {t: libraries(costs).get("SQLite", 0) for t, costs in dumps.items() if t != 1}
    writer = max(sqlite, key=sqlite.__getitem__, default=None)
    if writer is not None and not sqlite[writer]:
        writer = None
    rest: collections.Counter[tuple[str, str]] = collections.Counter()
    for thread, costs in dumps.items():
        if thread not in (1, writer):
            rest.update(costs)
    return {
        "event loop": dumps.get(1, collections.Counter()),
        "SQLite writer": dumps[writer] if writer is not None else collections.Counter(),
        "other threads": rest,
    }


def revision_tree(rev: str, root: Path = PROJECT_ROOT, into: Path = BUILD_DIR) -> Path:
    """The server's code (``src`` and ``plugins``) of git revision ``rev``, unpacked once under
    ``into`` (a directory named by the commit)."""
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = into / f"revision-{commit[:12]}"
    if not tree.is_dir():  # unpacked beside it and renamed whole: never half a tree
        into.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", commit, "src", "plugins"],
            capture_output=True,
            check=True,
        ).stdout
        unpacking = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=into))
        try:
            subprocess.run(["tar", "-x", "-C", str(unpacking)], input=archive, check=True)
            unpacking.rename(tree)
        finally:
            shutil.rmtree(unpacking, ignore_errors=True)  # gone once renamed
    return tree


def revision_env(tree: Path) -> dict[str, str]:
    """This process's environment with ``tree``'s ``src`` and ``plugins`` first on the path,
    ahead of the editable install's entries."""
    env = dict(os.environ)
    paths = [str(tree / "src"), str(tree / "plugins")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@contextlib.contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    """``env`` as this process's environment meanwhile (the benchmark's processes inherit
    it); None leaves it alone."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _valgrind() -> tuple[str, str]:
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise LoadToolMissing(
            "valgrind is not installed: `apt-get install valgrind` (make bench does)"
        )
    return valgrind, control


def _drained(db: Path, deadline_s: float) -> bool:
    return e2e.wait_until(
        lambda: e2e.unfinished(db) == 0 and e2e.undelivered(db) == 0,
        time.monotonic() + deadline_s,
    )


def _count(
    args: argparse.Namespace, control: str, server: tuple[str, str, int, Path], hooks_url: str
) -> dict[str, int]:
    """Warm the running server up, zero its counters, offer the jobs, wait for all of them
    and their webhooks, and dump the counters; the load's statuses."""
    url, token, pid, db = server
    hook = e2e.api_request("PUT", f"{url}/v1/webhook", token, {"url": f"{hooks_url}/hooks/bench"})
    e2e.api_request("POST", f"{hooks_url}/_secret", token, {"secret": hook["secret"]})
    target = Target(
        f"{url}/v1/jobs",
        body=e2e.BODY.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    open_loop(target, rate=args.rate, duration_s=args.warm_up / args.rate, drain_s=60)
    if not _drained(db, 600):
        raise RuntimeError("the warm-up's jobs did not all finish")
    subprocess.run([control, "-z", str(pid)], check=True, capture_output=True, timeout=60)
    load = open_loop(target, rate=args.rate, duration_s=args.jobs / args.rate, drain_s=60)
    if not _drained(db, 900):
        raise RuntimeError("the measured jobs did not all finish")
    subprocess.run([control, "-d", str(pid)], check=True, capture_output=True, timeout=120)
    return load["statuses"]


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One run: the instructions a job, in all and by thread and library."""
    valgrind, control = _valgrind()
    out = tmp / "callgrind.out"
    wrapper = [valgrind, "--tool=callgrind", "--separate-threads=yes"]
    wrapper.append(f"--callgrind-out-file={out}")
    scenario = tmp / "scenario.toml"
    scenario.write_text(e2e.SCENARIO)
    with (
        e2e.farm_server(str(scenario), cpu=CLIENT_CPU) as (farm, _),
        e2e.receiver_process(tmp) as (hooks_url, _),
        e2e.server_process(
            tmp, farm, e2e.WORKERS, "local", e2e.WEBHOOKS, wrapper=wrapper, ready_s=600
        ) as server,
    ):
        statuses = _count(args, control, server, hooks_url)
    jobs = statuses.get("202", 0)
    dumps: dict[int, collections.Counter[tuple[str, str]]] = {}
    for path in out.parent.glob(f"{out.name}.*-*"):  # callgrind.out.<dump>-<thread>
        dump, thread = path.name.removeprefix(f"{out.name}.").split("-")
        if dump == "1":  # the first dump: from the zeroing to callgrind_control -d
            with path.open(errors="replace") as lines:
                dumps[int(thread)] = self_costs(lines)
    roles = thread_roles(dumps)
    threads = {name: libraries(costs) for name, costs in roles.items()}
    per_job = {name: sum(libs.values()) / max(1, jobs) for name, libs in threads.items()}
    return {
        "jobs": jobs,
        "statuses": statuses,
        "instructions_per_job": round(sum(per_job.values())),
        "per_thread_per_job": {name: round(v) for name, v in per_job.items()},
        "per_thread_libraries_pct": {
            name: {lib: round(100 * n / max(1, sum(libs.values())), 1) for lib, n in libs.items()}
            for name, libs in threads.items()
        },
        "top_functions_per_job": {
            name: {
                f"{function} ({obj.rsplit('/', 1)[-1]})": round(count / max(1, jobs))
                for (obj, function), count in costs.most_common(args.top)
            }
            for name, costs in roles.items()
        },
    }


def report(result: dict[str, Any]) -> None:
    """Print one run's figures."""
    per_thread = result["per_thread_per_job"]
    print(
        f"instructions a job: {result['instructions_per_job'] / 1e6:.3f} M over "
        f"{result['jobs']} jobs at {result['rate']:g}/s ("
        + ", ".join(f"{name} {count / 1e6:.3f} M" for name, count in per_thread.items())
        + ")"
    )
    for name, libs in result["per_thread_libraries_pct"].items():
        shares = ", ".join(f"{lib} {pct:g} %" for lib, pct in libs.items() if pct >= 0.5)
        print(f"  {name}: {shares}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=600, help="Jobs counted.")
    parser.add_argument("--rate", type=float, default=10.0, help="Submits/s offered.")
    parser.add_argument("--warm-up", type=int, default=30, help="Jobs before the count.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Runs; each printed, the median one kept (of an even number, the lower middle one).",
    )
    parser.add_argument("--top", type=int, default=12, help="Functions kept a thread.")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="A git revision to set the working tree against, runs alternating.",
    )
    args = parser.parse_args(argv)
    if args.against:
        compare(args)
        return
    runs = [_one(args) for _ in range(args.repeat)]
    counts = [r["instructions_per_job"] for r in runs]
    median = _median(runs)
    document = {
        "benchmark": "instructions",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "method": "server under callgrind (--separate-threads), counters zeroed after the "
        "warm-up and dumped once every job is final and delivered; farm and receiver as in "
        "bench_end_to_end",
        "rate_per_s": args.rate,
        "warm_up_jobs": args.warm_up,
        **median,
        "runs": counts,
        "spread": round(max(counts) / min(counts) - 1, 4) if len(counts) > 1 else None,
    }
    print(f"wrote {write_results('instructions', document)}")


def _one(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    with (
        _environment(env),
        tempfile.TemporaryDirectory(prefix="bench-instr-", dir=scratch_dir()) as tmp,
    ):
        result = run(args, Path(tmp))
    result["rate"] = args.rate
    report(result)
    return result


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by instructions a job (of an even number, the lower middle one): a
    whole run, so that its threads' figures add up to its total."""
    return sorted(runs, key=lambda r: r["instructions_per_job"])[(len(runs) - 1) // 2]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """The working tree and revision ``args.against``, ``args.repeat`` runs each, alternating;
    each side's median run and the ratio of theirs (the revision's over the working tree's)."""
    tree = revision_tree(args.against)
    env = revision_env(tree)
    sides: dict[str, list[dict[str, Any]]] = {"working tree": [], args.against: []}
    for _ in range(args.repeat):
        for side, side_env in (("working tree", None), (args.against, env)):
            print(f"--- {side}", flush=True)
            sides[side].append(_one(args, side_env))
    medians = {side: _median(runs) for side, runs in sides.items()}
    this, other = medians["working tree"], medians[args.against]
    ratios = {
        name: round(other["per_thread_per_job"][name] / count, 4)
        for name, count in this["per_thread_per_job"].items()
        if count
    }
    ratios["all"] = round(other["instructions_per_job"] / this["instructions_per_job"], 4)
    print(
        f"instructions a job, the median run of {args.repeat} (the lower middle one of an even "
        f"number): working tree "
        f"{this['instructions_per_job'] / 1e6:.3f} M, {args.against} "
        f"{other['instructions_per_job'] / 1e6:.3f} M ({args.against} / working tree: "
        + ", ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items())
        + ")"
    )
    document = {
        "benchmark": "instructions_against",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "against": args.against,
        "tree": str(tree),
        "rate_per_s": args.rate,
        "runs": {side: [r["instructions_per_job"] for r in runs] for side, runs in sides.items()},
        "medians": {side: r["per_thread_per_job"] for side, r in medians.items()},
        "ratio_against_to_working_tree": ratios,
    }
    print(f"wrote {write_results('instructions-against', document)}")
    return document


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
