"""The performance targets table that ``make bench`` prints last: each target's verdict comes
from the figure this run wrote, and a file the run did not write counts as not run."""

from __future__ import annotations

import json
import os
from pathlib import Path

from loadtests.bench.targets import TARGETS, check, report


def _write(directory: Path, name: str, document: dict, mtime: float) -> None:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(document))
    os.utime(path, (mtime, mtime))


def _submit(ratio: float, p99_ms: float, postgres_per_s: float) -> dict:
    return {
        "summary": {
            "ratio_to_bare": {"imagerouter-sqlite": ratio},
            "p99_ms_at_1000_per_s": {"imagerouter-sqlite": p99_ms},
        },
        "saturation_median_per_s": {"bare": 26000.0, "imagerouter-postgres": postgres_per_s},
    }


def _by_name(verdicts) -> dict[str, tuple[float | None, str]]:
    return {v.target.name: (v.figure, v.status) for v in verdicts}


def test_each_bound_decides_met_or_not_met_in_its_own_direction(tmp_path: Path) -> None:
    _write(tmp_path, "submit", _submit(0.30, 30.0, 5000.0), 2000.0)
    _write(tmp_path, "end_to_end", {"done_per_s": 1600.0, "exact": True}, 2000.0)
    _write(tmp_path, "simulator", {"min_jobs_per_wall_minute": 2_500_000}, 2000.0)

    verdicts = _by_name(check(tmp_path, since=1000.0))

    assert verdicts["SQLite durable submits / bare handler (wrk)"] == (0.30, "not met")
    assert verdicts["SQLite p99 ms at 1,000 submits/s offered"] == (30.0, "not met")
    assert verdicts["PostgreSQL durable submits/s (wrk)"] == (5000.0, "met")  # the bound itself
    assert verdicts["end to end jobs/s done, every job exact"] == (1600.0, "met")
    assert verdicts["simulated jobs per wall-clock minute"] == (2_500_000, "met")


def test_an_upper_bound_is_met_only_below_it(tmp_path: Path) -> None:
    _write(tmp_path, "submit", _submit(0.40, 24.9, 6000.0), 2000.0)
    verdicts = _by_name(check(tmp_path, since=1000.0))
    assert verdicts["SQLite p99 ms at 1,000 submits/s offered"] == (24.9, "met")
    _write(tmp_path, "submit", _submit(0.40, 25.0, 6000.0), 2000.0)
    verdicts = _by_name(check(tmp_path, since=1000.0))
    assert verdicts["SQLite p99 ms at 1,000 submits/s offered"] == (25.0, "not met")


def test_an_inexact_end_to_end_run_does_not_meet_its_target(tmp_path: Path) -> None:
    _write(tmp_path, "end_to_end", {"done_per_s": 2000.0, "exact": False}, 2000.0)
    verdicts = _by_name(check(tmp_path, since=1000.0))
    assert verdicts["end to end jobs/s done, every job exact"] == (2000.0, "not met")


def test_files_older_than_the_run_missing_or_unreadable_count_as_not_run(tmp_path: Path) -> None:
    _write(tmp_path, "submit", _submit(0.40, 5.0, 6000.0), 500.0)  # an earlier run's
    (tmp_path / "simulator.json").write_text("{not json")
    _write(tmp_path, "end_to_end", {"exact": True}, 2000.0)  # no figure in it

    verdicts = check(tmp_path, since=1000.0)

    assert [v.status for v in verdicts] == ["not run"] * len(TARGETS)
    assert all(v.figure is None for v in verdicts)


def test_the_report_shows_every_target_and_the_host_speed_of_the_same_run(tmp_path: Path) -> None:
    _write(tmp_path, "submit", _submit(0.354, 3.89, 7045.4), 2000.0)

    text = report(tmp_path, since=1000.0)

    lines = text.splitlines()
    assert len(lines) == 1 + len(TARGETS) + 1
    assert "0.354" in lines[1]
    assert lines[1].endswith("  met")  # not "not met"
    assert "7,045" in lines[3]
    assert lines[4].endswith("not run")  # end to end: no file
    assert "26,000 requests/s" in lines[-1]
