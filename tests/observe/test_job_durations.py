"""Each job's end gives the same metrics and log fields on SQLite and on PostgreSQL: a sample
of ``imagerouter_job_duration_seconds`` and a ``duration_ms`` on its "job completed" or "job
failed" line."""

from __future__ import annotations

import logging

import pytest

from mockproviders import Farm
from tests.helpers.metrics import sample
from tests.observe.conftest import ApiFactory
from tests.polling import eventually
from tests.server.conftest import store_url

__all__ = ["store_url"]  # the fixture, run on SQLite and on PostgreSQL

DURATIONS = "imagerouter_job_duration_seconds_count"
#: flux-dev's candidates, all down for the job meant to fail.
FLUX_PROVIDERS = ("fal", "wavespeed", "replicate")


async def test_every_job_end_is_timed_in_metrics_and_logs(
    store_url: str | None, make_api: ApiFactory, farm: Farm, caplog: pytest.LogCaptureFixture
) -> None:
    """Four completed jobs and one failed: four and one duration samples, the debits, and a
    ``duration_ms`` on each job's final log line, whichever store holds the jobs."""
    caplog.set_level(logging.INFO, logger="imagerouter.jobs")
    api = await make_api(farm, **({"store": store_url} if store_url else {}))
    token = await api.key()
    prices = 0
    completed = []
    for number in range(4):
        accepted = await api.submit(token, f"a lighthouse {number}")
        prices += accepted["credits"]["price"]
        completed.append(accepted["id"])
    for job_id in completed:
        assert (await api.wait_final(token, job_id))["status"] == "completed"
    for name in FLUX_PROVIDERS:
        farm.set_faults(name, {"down": True})
    doomed = await api.submit(token, "doomed")
    prices += doomed["credits"]["price"]
    assert (await api.wait_final(token, doomed["id"]))["status"] == "failed"

    async def settled() -> bool:
        values = await api.metrics()
        return sample(values, "imagerouter_job_transitions_total", status="failed") == 1

    await eventually(settled, timeout_s=10, what="the failure to be counted")
    values = await api.metrics()
    assert sample(values, DURATIONS, status="completed") == 4
    assert sample(values, DURATIONS, status="failed") == 1
    assert sample(values, "imagerouter_credits_debited_total") == prices
    ends = {
        record.job_id: record
        for record in caplog.records
        if record.name == "imagerouter.jobs"
        and record.getMessage() in ("job completed", "job failed")
    }
    assert set(ends) == {*completed, doomed["id"]}
    for job_id, record in ends.items():
        assert isinstance(record.duration_ms, float), (job_id, vars(record))
        # what the line says is the job's own submit-to-end, as the job shows it
        job = await api.wait_final(token, job_id)
        expected_ms = (job["finished_at"] - job["created_at"]) * 1000
        assert record.duration_ms == pytest.approx(expected_ms, abs=1.0), (job_id, job)
