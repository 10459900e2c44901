"""The table ``make bench`` prints after the targets: each README figure of this run against
the run the README quotes, within 20 % or off, and a file this run did not write as not run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtests.bench.reproduce import BARE, FIGURES, REFERENCE_DIR, compare, report, save
from loadtests.bench.targets import SQLITE_RATIO, WHOLE_PATH


def _write(directory: Path, name: str, document: dict, mtime: float = 2000.0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(document))
    os.utime(path, (mtime, mtime))


def _submit(bare: float, sqlite: float) -> dict:
    return {
        "saturation_median_per_s": {"bare": bare, "imagerouter-sqlite": sqlite},
        "summary": {"ratio_to_bare": {"imagerouter-sqlite": sqlite / bare}},
    }


def _failover(failed_while_servable: int) -> dict:
    return {
        "outage": {"failed_while_servable": failed_while_servable, "inside_retry_after": 0},
        "total-outage": {"failed_while_servable": 0, "inside_retry_after": 0},
    }


def _by_name(comparisons) -> dict[str, tuple[float | None, float | None, str]]:
    return {c.figure.name: (c.reference, c.value, c.status) for c in comparisons}


def test_a_figure_reproduces_within_20_percent_either_way_and_not_past_it(
    tmp_path: Path,
) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _write(reference, "submit", _submit(30000.0, 10000.0))
    _write(reference, "end_to_end", {"done_per_s": 1000.0, "server_cpu_ms_per_job": 1.0})
    _write(run, "submit", _submit(24000.0, 8100.0))  # the host 20 % slower; SQLite -19 %
    _write(run, "end_to_end", {"done_per_s": 1210.0, "server_cpu_ms_per_job": 0.79})

    found = _by_name(compare(run, reference, since=1000.0))

    assert found[BARE.name] == (30000.0, 24000.0, "within 20 %")
    assert found["SQLite durable submits/s (wrk)"] == (10000.0, 8100.0, "within 20 %")
    assert found[WHOLE_PATH.name] == (1000.0, 1210.0, "off")
    assert found["end to end server CPU ms a job"] == (1.0, 0.79, "off")


def test_a_figure_that_was_zero_must_be_zero_again(tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _write(reference, "failover", _failover(0))
    _write(run, "failover", _failover(1))

    found = _by_name(compare(run, reference, since=1000.0))

    assert found["failover: jobs failed while servable"] == (0.0, 1.0, "off")
    assert found["failover: requests inside a Retry-After"] == (0.0, 0.0, "within 20 %")


def test_files_this_run_did_not_write_are_not_run_and_missing_references_say_so(
    tmp_path: Path,
) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _write(reference, "submit", _submit(30000.0, 10000.0))
    _write(run, "submit", _submit(30000.0, 10000.0), mtime=500.0)  # an earlier run's
    _write(run, "store", {"cpu_us_per_job": 80.0, "read_us": 10.0})

    found = _by_name(compare(run, reference, since=1000.0))

    assert found["SQLite durable submits/s (wrk)"] == (10000.0, None, "not run")
    assert found["store µs of CPU a job's life"] == (None, 80.0, "no reference")


def test_the_report_counts_the_figures_run_and_those_that_reproduced(tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _write(reference, "submit", _submit(30000.0, 10000.0))
    _write(reference, "failover", _failover(0))
    _write(run, "submit", _submit(30000.0, 13000.0))  # +30 %: the ratio too
    _write(run, "failover", _failover(0))

    lines = report(run, since=1000.0, reference_dir=reference).splitlines()

    assert len(lines) == 1 + 1 + len(FIGURES) + 2
    sqlite = next(line for line in lines if line.startswith("SQLite durable submits/s"))
    assert "off by +30 %" in sqlite
    assert sqlite.endswith("1.30  off by +30 %")  # the same host: the same verdict scaled
    assert "the same" in next(line for line in lines if "failed while servable" in line)
    assert lines[-2] == "2 of 4 figures run reproduced within 20 %"
    assert lines[-1] == (
        "2 of 4 at the host's speed (this run's bare handler rate 1.00 times the README run's)"
    )


def test_at_the_host_speed_a_rate_follows_the_host_and_a_cost_goes_against_it(
    tmp_path: Path,
) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _write(reference, "submit", _submit(30000.0, 10000.0))
    _write(reference, "end_to_end", {"done_per_s": 1000.0, "server_cpu_ms_per_job": 1.0})
    _write(reference, "memory", {"configs": {"queued": {"kib_per_job_in_flight": 0.5}}})
    # a host half as fast: the same code serves half the rate at twice the cost
    _write(run, "submit", _submit(15000.0, 5100.0))
    _write(run, "end_to_end", {"done_per_s": 380.0, "server_cpu_ms_per_job": 1.9})
    _write(run, "memory", {"configs": {"queued": {"kib_per_job_in_flight": 0.7}}})

    found = {c.figure.name: c for c in compare(run, reference, since=1000.0)}

    assert found[BARE.name].host_speed == 0.5
    assert found[BARE.name].scaled_ratio is None
    sqlite = found["SQLite durable submits/s (wrk)"]
    assert (sqlite.status, sqlite.scaled_status) == ("off", "within 20 %")
    assert sqlite.scaled_ratio == pytest.approx(1.02)
    cpu = found["end to end server CPU ms a job"]
    assert (cpu.status, cpu.scaled_status) == ("off", "within 20 %")
    assert cpu.scaled_ratio == pytest.approx(0.95)
    done = found[WHOLE_PATH.name]  # 0.76 at the host's speed: still off
    assert (done.status, done.scaled_status) == ("off", "off")
    ratio = found[SQLITE_RATIO.name]  # a ratio of one run: not scaled
    assert (ratio.status, ratio.scaled_status) == ("within 20 %", "within 20 %")
    memory = found["memory KiB a queued job"]  # a size: not scaled, +40 % is off either way
    assert (memory.status, memory.scaled_status) == ("off", "off")
    assert memory.scaled_ratio == memory.ratio


def test_save_keeps_the_results_files_the_figures_read(tmp_path: Path) -> None:
    run, reference = tmp_path / "run", tmp_path / "reference"
    _write(run, "submit", _submit(30000.0, 10000.0))
    (run / "end-to-end.folded").write_text("a;b 1\n")  # a profile: not a figure's file

    saved = save(run, reference)

    assert [p.name for p in saved] == ["submit.json"]
    assert json.loads((reference / "submit.json").read_text()) == _submit(30000.0, 10000.0)


def test_every_figure_reads_from_the_readme_runs_files() -> None:
    """The reference files in the repository are the README's run: every figure is in them."""
    found = compare(REFERENCE_DIR, REFERENCE_DIR, since=0.0)
    assert [c.status for c in found] == ["within 20 %"] * len(found)
    assert all(c.value is not None for c in found)
