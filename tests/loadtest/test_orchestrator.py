"""``imagerouter loadtest`` end to end, as a subprocess (Locust never enters this process): the
report's numbers are checked against the server's own database and the farm's own counters."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loadtests.summary import load_records

pytestmark = pytest.mark.slow

LOADTEST = [sys.executable, "-m", "imagerouter", "loadtest"]
REPORT_FILES = (
    "summary.json",
    "summary.md",
    "throughput.png",
    "latency.png",
    "providers.png",
    "locust/report.html",
    "locust/locust_stats.csv",
    "raw/jobs.json",
)


def _loadtest(*args: str, timeout_s: float = 150) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(
        [*LOADTEST, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )


def _db(out: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{out / 'data' / 'imagerouter.db'}?mode=ro", uri=True)


def _check_against_the_system(out: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The summary's jobs, credits and Retry-After numbers equal what the server stored and
    what the farm counted; every job a client was told about is stored."""
    summary = json.loads((out / "summary.json").read_text())
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    with _db(out) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
        ledger = dict(db.execute("SELECT kind, sum(amount) FROM ledger GROUP BY kind"))
        (balance,) = db.execute("SELECT balance FROM accounts WHERE name = 'loadtest'").fetchone()
        server_ids = {row[0] for row in db.execute("SELECT id FROM jobs")}
        calls = db.execute(
            "SELECT count(*) FROM attempts WHERE outcome IN ('ok', 'error', 'canceled')"
        ).fetchone()[0]
        unrefunded = db.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('failed', 'canceled') AND refunded != price"
        ).fetchone()[0]
    jobs = summary["jobs"]
    assert jobs["submitted"] == len(server_ids) == sum(statuses.values()) > 0
    for status in ("completed", "failed", "canceled"):
        assert jobs[status] == statuses.get(status, 0), status
    assert jobs["not_final"] == 0
    assert set(statuses) <= {"completed", "failed", "canceled"}
    assert unrefunded == 0
    credits = summary["credits"]
    assert credits["charged"] == -ledger["debit"]
    assert credits["refunded"] == (ledger.get("refund") or 0)
    assert credits["balance"] == balance == sum(v or 0 for v in ledger.values())
    assert credits["balanced"]
    farm = json.loads((out / "raw" / "farm_stats.json").read_text())["providers"]
    inside = sum(p["inside_retry_after"] for p in farm.values())
    assert summary["retry_after"]["inside_retry_after"] == inside == 0
    generations = sum(p["generations"] for p in farm.values())
    assert calls <= generations <= calls + statuses.get("canceled", 0)
    accepted = {r["id"] for r in load_records(out / "raw") if r.get("e") == "submit" and r["id"]}
    assert accepted
    assert accepted <= server_ids
    assert jobs["lost"] == []
    return summary, statuses


def _stopped(out: Path) -> None:
    """The server the run started answers no more."""
    host = json.loads((out / "plan.json").read_text())["host"]
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"{host}/healthz", timeout=2)


def test_steady_run_matches_the_server_and_the_farm(tmp_path: Path) -> None:
    """``loadtest steady --users 5 --duration 10``: exits 0, leaves the report, and its numbers
    are the server's and the farm's."""
    out = tmp_path / "report"
    done = _loadtest("steady", "--users", "5", "--duration", "10", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary, statuses = _check_against_the_system(out)
    assert summary["ok"]
    # Clients cancel 2 % of their jobs; on ten-odd jobs that is sometimes two of them, so the
    # healthy farm's promise is read on the jobs no client canceled.
    records = load_records(out / "raw")
    asked = {r["id"] for r in records if r.get("e") == "submit" and r.get("cancel")}
    canceled = statuses.get("canceled", 0)
    assert canceled <= len(asked)
    assert statuses.get("completed", 0) >= 0.9 * (sum(statuses.values()) - canceled)
    assert "all checks passed" in (out / "summary.md").read_text()
    # The realistic images were stored while the run lasted, then deleted (they take gigabytes).
    assert not (out / "data" / "media").exists()
    assert re.search(r"deleted [1-9]\d* stored images", done.stderr), done.stderr
    _stopped(out)


def test_an_outage_mid_run_fails_jobs_cleanly(tmp_path: Path) -> None:
    """Every provider goes down 3 s in (switched live by the orchestrator): jobs submitted after
    that fail by their deadline with a refund, none hangs, and the run still passes its checks."""
    scenario = tmp_path / "outage.toml"
    scenario.write_text(
        'description = "test: everyone down from 3 s"\nduration_s = 8\nusers = 4\n'
        'farm = "loadtest"\n'
        '[traffic]\nshape = "steady"\njobs_per_user_s = 1\ncancel_fraction = 0\n'
        "[router]\ndeadline_s = 4\nmax_wait_s = 1\nmax_total_wait_s = 3\n"
        '[[phases]]\nname = "everyone down"\nproviders = ["*"]\nat_s = 3\n'
        "faults = { down = true }\n"
    )
    out = tmp_path / "report"
    done = _loadtest(str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary, statuses = _check_against_the_system(out)
    assert statuses.get("failed", 0) > 0
    switches = json.loads((out / "raw" / "switches.json").read_text())
    served = json.loads((out / "raw" / "farm_stats.json").read_text())["providers"]
    assert {s["provider"] for s in switches} == set(served) >= {"fal", "wavespeed", "openai"}
    assert all(2.9 <= s["applied_s"] <= 4.5 and s["faults"]["down"] for s in switches)
    t0 = json.loads((out / "raw" / "run.json").read_text())["t0"]
    with _db(out) as db:
        late = dict(
            db.execute(
                "SELECT status, count(*) FROM jobs WHERE created_at > ? GROUP BY status",
                (t0 + 3.5,),
            )
        )
    assert set(late) == {"failed"}
    assert summary["latency"]["end_to_end_s"]["failed"]["max"] <= 4 + 5  # by the deadline
    # The jobs still running when the traffic stopped were followed to their end: every job a
    # client polled or streamed has its client outcome (Locust waits for its followers).
    records = load_records(out / "raw")
    followed = {
        r["id"] for r in records if r.get("e") == "submit" and r.get("follow") in ("poll", "sse")
    }
    finals = {r["id"] for r in records if r.get("e") == "final"}
    assert followed
    assert followed <= finals, f"{len(followed - finals)} followed jobs have no client outcome"
    _stopped(out)


def test_ctrl_c_stops_every_process_and_exits_130_not_as_a_failed_check(tmp_path: Path) -> None:
    """SIGINT mid-run: the server, the farm and Locust are stopped, no report is written, and
    the exit status is 130, not 1 (a failed check), so that a CI job can tell the two apart."""
    import signal
    import time

    out = tmp_path / "interrupted"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    args = ["steady", "--users", "2", "--duration", "60s", "--out", str(out)]
    run = subprocess.Popen(
        [*LOADTEST, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / "plan.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        host = json.loads((out / "plan.json").read_text())["host"]
        while time.monotonic() < deadline:  # traffic has begun once the server answers
            try:
                urllib.request.urlopen(f"{host}/healthz", timeout=2)
                break
            except urllib.error.URLError:
                time.sleep(0.2)
        time.sleep(2)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert f"interrupted: no report; what the run wrote is in {out}" in err
    assert not (out / "summary.json").exists()
    _stopped(out)
