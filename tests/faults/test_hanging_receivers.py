"""1,000 webhook targets that accept a connection and never answer, beside 10 healthy ones:
the healthy ones still get their deliveries within seconds (no head-of-line blocking behind
the hanging ones), and the hanging ones follow the retry schedule (a timeout, then the next
attempt after the schedule's delay) while the sockets they hold stay bounded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.faults.receivers import HangingTargets
from tests.faults.single import make_key, reader, single_server
from tests.faults.tally import BODY, Load, books
from tests.replicas.fleet import Receiver, until

pytestmark = pytest.mark.slow

HANGING = 1000
HEALTHY = 10
EVERY = (HANGING + HEALTHY) // HEALTHY  # one healthy target's job in every EVERY
TIMEOUT_S = 2.0
RETRY_SCALE = 0.4  # the schedule's second attempt 5 s × 0.4 after the first


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_hanging_receivers_do_not_hold_up_healthy_ones(fault_counts, tmp_path: Path) -> None:
    db = tmp_path / "data" / "imagerouter.db"
    token, _ = await make_key(db, 10_000_000, webhook_secret=True)
    healthy = [Receiver() for _ in range(HEALTHY)]
    async with HangingTargets(HANGING) as hanging:
        for receiver in healthy:
            await receiver.start()
        try:
            good = {n: healthy[n // EVERY].url for n in range(EVERY // 2, HANGING + HEALTHY, EVERY)}
            bad = iter(hanging.urls)
            targets = [good.get(n) or next(bad) for n in range(HANGING + HEALTHY)]
            settings = {
                "workers": 32,
                "webhook_timeout_s": TIMEOUT_S,
                "webhook_lease_s": TIMEOUT_S + 2,
                "webhook_retry_scale": RETRY_SCALE,
                "webhook_retry_jitter": 0.0,
            }
            async with single_server(tmp_path, db.parent, generation_ms=20, server=settings) as srv:
                assert srv.proc is not None
                load = Load(
                    [srv.url],
                    token,
                    HANGING + HEALTHY,
                    interval_s=0.004,
                    bodies=lambda n: {**BODY, "webhook_url": targets[n]},
                )
                fds = [_fds(srv.proc.pid)]
                running = asyncio.ensure_future(load.run())

                async def healthy_all_delivered() -> bool:
                    fds.append(_fds(srv.proc.pid))
                    return all(receiver.hits for receiver in healthy)

                await until(healthy_all_delivered, 60, "every healthy receiver's webhook")
                await running
                fetch = reader(db)

                async def every_hanging_tried_twice() -> bool:
                    fds.append(_fds(srv.proc.pid))
                    rows = await fetch(
                        "SELECT count(*) FROM deliveries WHERE attempts >= 2 "
                        "AND url NOT IN (" + ",".join(f"'{r.url}'" for r in healthy) + ")"
                    )
                    return rows[0][0] == HANGING

                await until(every_hanging_tried_twice, 90, "each hanging target tried twice")
                ended = {
                    row[0]: row[1]
                    for row in await fetch(
                        "SELECT job_id, created_at FROM events WHERE type = 'job.completed'"
                    )
                }
                found = await books(fetch)
                peak_mib = _peak_rss_mib(srv.proc.pid)
                attempts = await fetch(
                    "SELECT a.delivery_id, a.attempt, a.started_at, a.outcome, a.error, "
                    "a.next_attempt_at FROM delivery_attempts a JOIN deliveries d "
                    "ON d.id = a.delivery_id WHERE d.url LIKE '%/hook' ORDER BY a.id"
                )
        finally:
            for receiver in healthy:
                await receiver.aclose()
    fault_counts(load.report("hanging-receivers", found))
    load.assert_clean(found)
    lateness = [hit.at - ended[hit.job_id] for receiver in healthy for hit in receiver.hits]
    line = (
        f"faults hanging-receivers: healthy webhook lateness max={max(lateness):.2f}s "
        f"hanging peak connections={hanging.peak} server fds peak={max(fds)} "
        f"(at start {fds[0]}) server peak RSS={peak_mib:.0f} MiB"
    )
    print(line)
    fault_counts(line)
    assert len(lateness) == HEALTHY
    assert max(lateness) < 10, "a healthy receiver waited behind hanging ones"
    by_delivery: dict[str, list] = {}
    for row in attempts:
        by_delivery.setdefault(row[0], []).append(row)
    hung = [rows for rows in by_delivery.values() if rows[0][3] != "succeeded"]
    assert len(hung) == HANGING
    for rows in hung:
        first, second = rows[0], rows[1]
        assert "timed out" in (first[4] or "")
        assert second[2] >= first[5] - 0.01  # not before the schedule said
    # sockets stay bounded: slots (64) plus attempts aside (1,024), the defaults
    assert hanging.peak <= 64 + 1024
    assert max(fds) <= fds[0] + 64 + 1024 + 100
    assert peak_mib < 1024  # a loose ceiling: memory does not grow with every hanging attempt
