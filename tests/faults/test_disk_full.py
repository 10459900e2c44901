"""The data disk fills up under load: the SQLite data directory is a small tmpfs, and a
ballast file takes its last bytes. Submits answer 503 ``storage_full`` with ``Retry-After``
and nothing half-written; jobs running meanwhile end once with their credits exact; once the
ballast goes the server takes submits again by itself; and the database passes
``PRAGMA integrity_check``."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.services import require_root_for_tmpfs
from tests.faults.single import make_key, reader, single_server
from tests.faults.tally import BODY, Load, books, settled_books
from tests.replicas.fleet import _get_json, until

pytestmark = pytest.mark.slow

TOTAL = 400
#: A long prompt: every job's rows take a few KiB, so the load soon needs new pages.
PROMPT = "a lighthouse on a cliff at dusk, " * 120


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test (0700, as the data directory must be)."""
    require_root_for_tmpfs()
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left; the file."""
    ballast = disk / "ballast"
    chunk = b"\0" * 65536
    with ballast.open("wb", buffering=0) as out:
        for _ in range(16 * 64 + 64):  # bounded: more chunks than the disk holds
            try:
                out.write(chunk)
            except OSError:
                break
        with contextlib.suppress(OSError):
            for _ in range(64):
                out.write(b"\0" * 512)
    return ballast


async def test_a_full_disk_refuses_submits_cleanly_and_recovers_by_itself(
    fault_counts, small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "imagerouter.db"
    token, _ = await make_key(db, 10_000_000)
    async with single_server(tmp_path, small_disk, server={"workers": 8}) as server:
        load = Load([server.url], token, TOTAL, interval_s=0.02, body={**BODY, "prompt": PROMPT})
        running = asyncio.ensure_future(load.run())
        await asyncio.sleep(1.0)
        ballast = await asyncio.to_thread(fill, small_disk)
        await until(lambda: load.codes["storage_full"] >= 5 or running.done(), 30, "a full disk")
        ready = await asyncio.to_thread(_get_json, f"{server.url}/readyz", 5)
        assert ready["status"] == "ready"  # reads still work: the server stays ready
        await asyncio.sleep(1.0)
        ballast.unlink()
        await running
        assert load.codes["storage_full"] > 0, "the disk never filled"

        await settled_books(reader(db))
    # an operator sees each refusal as one warning line, not a traceback per request
    log = server.log.read_text(errors="replace")
    assert "storage_full on POST /v1/jobs" in log
    assert "Traceback" not in log
    found = await books(reader(db))
    fault_counts(load.report("disk-full", found))
    load.assert_clean(found)
    assert load.gave_up == 0
    assert found.by_status == {"completed": found.totals["jobs"]}
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
