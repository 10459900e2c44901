"""`make demo` end to end, shortened: the server over the farm, jobs submitted over HTTP."""

from __future__ import annotations

from imagerouter.cli.demo import run_demo


async def test_demo_jobs_complete_through_the_server_and_credits_add_up() -> None:
    """Every job completes, the farm saw no request inside a Retry-After window, and the
    account's balance equals the grant minus what the jobs were charged."""
    report = await run_demo("demo", jobs=12, interval_s=0.05)
    assert [job["status"] for job in report.jobs] == ["completed"] * 12
    assert all(s["inside_retry_after"] == 0 for s in report.farm_stats["providers"].values())
    charged = sum(job["credits"]["charged"] for job in report.jobs)
    assert report.account["balance"] == 10_000 - charged
