"""The benchmarks' per-process counters read from ``/proc``."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from loadtests.bench.common import context_switches

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_context_switches_count_every_thread_of_the_process() -> None:
    """A thread that sleeps 20 times switches out 20 times of its own accord: the process's
    voluntary count, summed over its threads, grows by at least that while it lives."""
    slept, finish = threading.Event(), threading.Event()

    def sleeper() -> None:
        for _ in range(20):
            time.sleep(0.001)
        slept.set()
        finish.wait(10)

    before = context_switches(os.getpid())
    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        assert slept.wait(10)
        voluntary, _ = context_switches(os.getpid())
    finally:
        finish.set()
        thread.join()
    assert voluntary - before[0] >= 20
