"""The instruction benchmark's reading of callgrind's dumps: each function's own instructions
add up to the program's total, by library, and the threads are told apart by what they run."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.bench.bench_instructions import (
    libraries,
    revision_env,
    revision_tree,
    self_costs,
    thread_roles,
)

#: A program with known work in a library of its own: SQLite on its own thread.
PROGRAM = """
import sqlite3, threading
def store():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
    conn.executemany("INSERT INTO t (y) VALUES (?)", [("row %d" % i,) for i in range(2000)])
    conn.execute("SELECT count(*), sum(length(y)) FROM t").fetchall()
thread = threading.Thread(target=store)
thread.start()
thread.join()
"""


def _valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None:
        reason = "valgrind is missing: apt-get install -y valgrind"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the instruction benchmark's test")
        pytest.skip(reason)
    return found


def _totals(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise AssertionError(f"{path} has no totals line")


def test_own_costs_add_up_to_each_threads_total_and_sqlite_names_its_thread(
    tmp_path: Path,
) -> None:
    """Under real callgrind: each thread's functions' own instructions sum to exactly the
    total callgrind wrote for that thread (calls' inclusive costs are not counted twice),
    and the thread that ran SQLite is the writer, not the main one."""
    out = tmp_path / "callgrind.out"
    subprocess.run(
        [
            _valgrind(),
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            PROGRAM,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    dumps = {}
    for path in tmp_path.glob("callgrind.out-*"):
        costs = self_costs(path.read_text(errors="replace").splitlines(keepends=True))
        assert sum(costs.values()) == _totals(path)
        dumps[int(path.name.rsplit("-", 1)[1])] = costs
    assert set(dumps) == {1, 2}
    roles = thread_roles(dumps)
    assert roles["SQLite writer"] is dumps[2]
    assert roles["event loop"] is dumps[1]
    assert not roles["other threads"]
    writer = libraries(dumps[2])
    assert writer["SQLite"] > 0.3 * sum(writer.values())
    assert libraries(dumps[1]).get("SQLite", 0) < writer["SQLite"]


def test_compressed_names_calls_and_libraries() -> None:
    """Names given once as ``(id) name`` and then as ``(id)``; a ``calls=`` line's cost is
    the callee's, not the caller's; libraries by file name, the rest as other."""
    dump = """events: Ir
ob=(1) /usr/bin/python3.11
fl=(1) ???
fn=(1) _PyEval_EvalFrameDefault
0 100
cob=(2) /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6
cfl=(1)
cfn=(2) sqlite3VdbeExec
calls=3 0
0 700
+2 5
ob=(2)
fl=(1)
fn=(2)
0 600
ob=(3) /usr/lib/libfoo.so
fl=(1)
fn=(3) foo
* 40
totals: 745
"""
    costs = self_costs(dump.splitlines(keepends=True))
    assert costs == collections.Counter(
        {
            ("/usr/bin/python3.11", "_PyEval_EvalFrameDefault"): 105,
            ("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6", "sqlite3VdbeExec"): 600,
            ("/usr/lib/libfoo.so", "foo"): 40,
        }
    )
    assert libraries(costs) == {"SQLite": 600, "interpreter": 105, "other": 40}


def test_without_sqlite_no_thread_is_called_the_writer() -> None:
    main = collections.Counter({("/usr/bin/python3.11", "f"): 10})
    helper = collections.Counter({("/usr/lib/x86_64-linux-gnu/libc.so.6", "memcpy"): 5})
    roles = thread_roles({1: main, 2: helper})
    assert roles["SQLite writer"] == collections.Counter()
    assert roles["other threads"] == helper


def test_a_revisions_runs_import_that_revisions_code(tmp_path: Path) -> None:
    """``--against``: the revision's ``src`` and ``plugins`` unpacked once, by commit, and a
    process started with its environment imports the package and the plugins from there,
    not from the editable install."""
    tree = revision_tree("HEAD", into=tmp_path)
    assert tree.name.startswith("revision-")
    assert (tree / "src" / "imagerouter" / "__init__.py").is_file()
    marker = tree / "src" / "imagerouter" / "__init__.py"
    before = marker.stat().st_mtime_ns
    assert revision_tree("HEAD", into=tmp_path) == tree  # unpacked once
    assert marker.stat().st_mtime_ns == before
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import imagerouter, imagerouter_fal; "
            "print(imagerouter.__file__); print(imagerouter_fal.__file__)",
        ],
        env=revision_env(tree),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert [Path(path).is_relative_to(tree) for path in where] == [True, True]
    with pytest.raises(subprocess.CalledProcessError):
        revision_tree("no-such-revision", into=tmp_path)
