"""Identifiers (:mod:`imagerouter.jobs.ids`): random characters sliced from bulk draws of OS
randomness must never repeat, across threads or a fork; timed ids sort by their time."""

from __future__ import annotations

import os
import re
import threading

from imagerouter.jobs.ids import new_id, new_timed_id


def test_ids_never_repeat_across_threads_and_refills() -> None:
    """Four threads drawing many refills' worth of ids each get ids nobody else got."""
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_id("job") for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for into in found for i in into]
    assert len(set(ids)) == len(ids) == 20_000
    assert all(re.fullmatch(r"job_[a-z2-7]{20}", i) for i in ids)
    assert re.fullmatch(r"key_[a-z2-7]{12}", new_id("key", 12))


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    """The child's next id is not the parent's next id (the inherited reservoir is dropped)."""
    new_id("job")  # the reservoir holds unused characters now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id, and leave at once
        os.write(write, new_id("job").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child != new_id("job")


def test_timed_ids_sort_by_their_millisecond() -> None:
    """Ids made at later milliseconds sort after earlier ones, and keep 20 random characters."""
    times = [1_800_000_000.0 + n * 0.001 for n in range(0, 5_000, 7)]
    ids = [new_timed_id("job", t) for t in reversed(times)]
    assert sorted(ids) == list(reversed(ids))
    assert all(re.fullmatch(r"job_[a-z2-7]{30}", i) for i in ids)
    assert new_timed_id("job", 0.0) < new_timed_id("job", 1.0) < new_timed_id("job", 2.0**40)
