"""The interpreter comparison's choice of the other CPython and its summary."""

from __future__ import annotations

import os
import sys

from loadtests.bench.interpreters import describe, other_python, summary


def test_describe_sees_through_a_venv_to_its_base_interpreter() -> None:
    """This process's Python, a venv's or not, is described by the interpreter it runs on."""
    info = describe(sys.executable)
    assert info["version"] == ".".join(str(part) for part in sys.version_info[:3])
    assert info["venv"] == (sys.prefix != sys.base_prefix)
    assert os.path.isfile(info["real"])
    if info["venv"]:
        assert not info["real"].startswith(sys.prefix + os.sep)


def test_the_other_python_is_never_this_one_nor_a_missing_command() -> None:
    ours = describe(sys.executable)["real"]
    assert other_python([sys.executable, "no-such-python-3.99"], ours) is None
    # measured against another interpreter, this one is taken
    found = other_python(["no-such-python-3.99", sys.executable], "/nowhere/python3")
    assert found is not None
    assert describe(found)["real"] == ours


def test_the_summary_sets_each_median_against_the_other_interpreters() -> None:
    def run(done: float, server: float) -> dict[str, float]:
        return {"done_per_s": done, "server_cpu_ms_per_job": server, "farm_cpu_ms_per_job": 0.4}

    runs = {
        "this": [run(1300, 0.70), run(1250, 0.80), run(1400, 0.72)],
        "other": [run(1100, 0.84), run(900, 1.0), run(1200, 0.80)],
    }
    result = summary(runs)
    assert result["medians"]["this"]["done_per_s"] == 1300
    assert result["medians"]["other"]["server_cpu_ms_per_job"] == 0.84
    assert result["ratios"]["done_per_s"] == round(1300 / 1100, 3)
    assert result["ratios"]["server_cpu_ms_per_job"] == round(0.72 / 0.84, 3)
    assert result["ratios"]["farm_cpu_ms_per_job"] == 1.0
