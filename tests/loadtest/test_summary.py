"""The summary's numbers from a run's record: outcomes, failovers, breakers, credits, checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtests.report import render_markdown
from loadtests.scenario import Expect, load_load_scenario
from loadtests.summary import RunData, summarize

T0 = 1_000.0


def _job(
    job_id: str,
    status: str,
    *,
    price: int = 26,
    refunded: int = 0,
    attempts: list[dict[str, Any]] | None = None,
    created: float = 1.0,
    finished: float | None = 2.0,
    webhook: bool = False,
) -> dict[str, Any]:
    served = next((a["provider"] for a in reversed(attempts or []) if a["outcome"] == "ok"), None)
    return {
        "id": job_id,
        "status": status,
        "request": {
            "model": "gpt-image-2",
            "webhook_url": "http://127.0.0.1:1/hooks/x" if webhook else None,
        },
        "created_at": T0 + created,
        "started_at": T0 + created + 0.01,
        "finished_at": None if finished is None else T0 + finished,
        "result": {"provider": served} if status == "completed" else None,
        "error": {"code": "no_provider_available"} if status == "failed" else None,
        "attempts": attempts or [],
        "credits": {"price": price, "charged": price, "refunded": refunded},
    }


def _call(
    provider: str,
    outcome: str,
    at: float = 1.0,
    error: str | None = None,
    reason: str | None = None,
) -> dict:
    return {
        "provider": provider,
        "outcome": outcome,
        "started_at": T0 + at,
        "latency_ms": 100.0,
        "error_class": error,
        "reason": reason,
    }


def _gave_up(reason: str, servable: list[str] | None) -> dict[str, Any]:
    """A failed job's ``error`` as the server writes it since ``failed_while_servable``."""
    error = {
        "code": "no_provider_available",
        "message": f"no provider could serve gpt-image-2: {reason}",
        "error_class": "NoProviderAvailable",
        "reason": reason,
        "failed_while_servable": bool(servable),
    }
    if servable:
        error["servable"] = servable
    return error


SERVABLE = "servable: callable when the job gave up"


def _ledger(jobs: list[dict[str, Any]], granted: int = 1000) -> dict[str, Any]:
    entries = [{"kind": "grant", "amount": granted, "job_id": None}]
    balance = granted
    for job in jobs:
        entries.append({"kind": "debit", "amount": -job["credits"]["price"], "job_id": job["id"]})
        balance -= job["credits"]["price"]
        if job["credits"]["refunded"]:
            entries.append(
                {"kind": "refund", "amount": job["credits"]["refunded"], "job_id": job["id"]}
            )
            balance += job["credits"]["refunded"]
    return {"balance": balance, "ledger": entries[::-1]}


def _data(jobs: list[dict[str, Any]], **over: Any) -> RunData:
    scenario = load_load_scenario("launch-week").scaled(120)
    scenario = scenario.model_copy(update={"expect": Expect()})  # no completion target here
    fields: dict[str, Any] = {
        "scenario": scenario,
        "users": 10,
        "workers": 0,
        "t0": T0,
        "traffic_end": T0 + 120,
        "drain_end": T0 + 125,
        "jobs": jobs,
        "account": _ledger(jobs),
        "farm_stats": {
            "providers": {
                "fal": {
                    "requests": 9,
                    "generations": 5,
                    "by_status": {"200": 3, "429": 2},
                    "inside_retry_after": 0,
                    "inside_retry_after_raw": 1,
                    "retry_after_issued": 2,
                },
                "wavespeed": {"requests": 3, "generations": 3, "by_status": {"200": 3}},
                "openai": {"requests": 1, "generations": 1, "by_status": {"200": 1}},
            }
        },
        "records": [
            {"e": "submit", "id": j["id"], "status": 202, "t": T0, "ms": 3.0} for j in jobs
        ],
    }
    fields.update(over)
    return RunData(**fields)


def _check(summary: dict[str, Any], name: str) -> bool:
    return next(c["ok"] for c in summary["checks"] if c["name"] == name)


def test_a_clean_run_passes_every_check() -> None:
    """Completed, failed-and-refunded and canceled-and-refunded jobs: every check passes."""
    jobs = [
        _job("job_a", "completed", attempts=[_call("fal", "ok")]),
        _job(
            "job_b",
            "completed",
            attempts=[_call("fal", "error", error="RateLimited"), _call("wavespeed", "ok")],
        ),
        _job(
            "job_c",
            "failed",
            refunded=26,
            attempts=[_call("wavespeed", "error"), _call("wavespeed", "error")],
        ),
        _job("job_d", "canceled", refunded=26),
    ]
    summary = summarize(_data(jobs))
    assert summary["ok"], [c for c in summary["checks"] if not c["ok"]]
    jobs_out = summary["jobs"]
    assert [jobs_out[k] for k in ("submitted", "completed", "failed", "canceled", "not_final")] == [
        4,
        2,
        1,
        1,
        0,
    ]
    assert jobs_out["lost"] == []
    assert summary["providers"]["failovers"] == {"fal → wavespeed": 1}
    assert summary["providers"]["retries"] == {"wavespeed": 1}
    assert summary["providers"]["served"] == {"fal": 1, "wavespeed": 1}
    credits = summary["credits"]
    assert (credits["charged"], credits["refunded"], credits["balanced"]) == (104, 52, True)
    assert summary["retry_after"]["inside_retry_after_raw"] == 1
    assert summary["latency"]["end_to_end_s"]["completed"]["p50"] == 1.0


def test_lost_stuck_and_unrefunded_jobs_fail_their_checks() -> None:
    """A job the client got a 202 for but the server lacks, one still queued, one failed
    without a refund: each fails its check, and so does the ledger."""
    jobs = [_job("job_a", "failed"), _job("job_b", "queued", finished=None)]
    records = [
        {"e": "submit", "id": i, "status": 202, "t": T0, "ms": 1.0}
        for i in ("job_a", "job_b", "job_gone")
    ]
    account = _ledger(jobs)
    account["balance"] += 5  # credits from nowhere
    summary = summarize(_data(jobs, records=records, account=account))
    assert summary["jobs"]["lost"] == ["job_gone"]
    assert not summary["ok"]
    for name in (
        "no job lost",
        "every job ended",
        "failed and canceled jobs refunded",
        "credits balance",
    ):
        assert not _check(summary, name), name
    assert any("balance" in p for p in summary["credits"]["problems"])


def test_submits_the_server_refused_fail_their_check() -> None:
    """Submits refused for the client's mistake (a 400, a 422) fail the run, as does a run
    with none accepted; refusals by the rate limit (429) are load, not a mistake."""
    jobs = [_job("job_a", "completed", attempts=[_call("fal", "ok")])]
    limited = {"e": "submit", "id": None, "status": 429, "t": T0, "ms": 1.0}
    summary = summarize(_data(jobs, records=[*_data(jobs).records, limited]))
    assert _check(summary, "the server took the submits")
    for refused in (400, 422):
        record = {**limited, "status": refused}
        summary = summarize(_data(jobs, records=[*_data(jobs).records, record, record]))
        assert not _check(summary, "the server took the submits")
        assert not summary["ok"]
        detail = next(c["detail"] for c in summary["checks"] if c["name"].startswith("the server"))
        assert f"2 × {refused}" in detail
    nothing = summarize(_data([], records=[limited]))
    assert not _check(nothing, "the server took the submits")


def test_inside_retry_after_fails_its_check() -> None:
    """One request inside a Retry-After window on the farm fails the compliance check."""
    data = _data([_job("job_a", "completed", attempts=[_call("fal", "ok")])])
    data.farm_stats["providers"]["fal"]["inside_retry_after"] = 1
    summary = summarize(data)
    assert summary["retry_after"]["inside_retry_after"] == 1
    assert not _check(summary, "no request inside a Retry-After window")


def test_breaker_spans_and_recovery_after_a_phase() -> None:
    """Samples of breaker states give open spans; the first success after a phase ends gives
    the recovery time."""
    samples = [
        {"t": 59.5, "breakers": {"fal": "closed"}, "trips": {"fal": 0}},
        {"t": 60.5, "breakers": {"fal": "open"}, "trips": {"fal": 1}},
        {"t": 70.0, "breakers": {"fal": "half_open"}, "trips": {"fal": 1}},
        {"t": 86.0, "breakers": {"fal": "closed"}, "trips": {"fal": 3}},
    ]
    jobs = [_job("job_a", "completed", attempts=[_call("fal", "ok", at=85.0)])]
    summary = summarize(_data(jobs, samples=samples))
    fal = summary["breakers"]["by_provider"]["fal"]
    assert fal["trips"] == 3
    assert fal["open_spans"] == [{"opened_s": 60.5, "closed_s": 86.0, "open_for_s": 25.5}]
    recovery = {r["phase"]: r for r in summary["breakers"]["recovery"] if r["provider"] == "fal"}
    assert recovery["fal down"]["ended_s"] == 84.0
    assert recovery["fal down"]["serving_again_after_s"] == 1.1  # started 85.0, took 0.1 s


def test_webhook_latency_and_missing_deliveries() -> None:
    """Webhook latency is first arrival minus the job's end; a webhook job without one is
    missing and fails the check; a bad signature fails it too."""
    jobs = [
        _job("job_a", "completed", webhook=True, attempts=[_call("fal", "ok")]),
        _job("job_b", "completed", webhook=True, attempts=[_call("fal", "ok")]),
    ]
    arrivals = [
        {
            "arrived_at": T0 + 2.004,
            "job_id": "job_a",
            "type": "job.completed",
            "webhook_id": "msg_1",
            "signature_valid": True,
        },
        {
            "arrived_at": T0 + 3.0,
            "job_id": "job_a",
            "type": "job.completed",
            "webhook_id": "msg_1",
            "signature_valid": False,
        },
    ]
    summary = summarize(_data(jobs, webhooks=arrivals, capabilities={"webhooks": True}))
    hooks = summary["webhooks"]
    assert (hooks["expected"], hooks["delivered"], hooks["missing"]) == (2, 1, ["job_b"])
    assert hooks["redelivered"] == 1
    assert hooks["invalid_signatures"] == 1
    assert hooks["latency_ms"]["p50"] == 4.0
    assert not _check(summary, "webhooks delivered and signed")


def _summary_check(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in summary["checks"] if c["name"] == name)


SERVABLE_CHECK = "no job failed while a provider could serve it"


def test_a_job_failed_while_servable_fails_its_check() -> None:
    """Failed jobs whose error says ``failed_while_servable: true`` are counted by reason and
    by servable provider (from ``error.servable``, else from the closing "servable" skips),
    and fail the check, whose detail names the count and the reasons; failed jobs that were
    not servable are not counted."""
    budget = _job(
        "job_a",
        "failed",
        refunded=26,
        attempts=[
            _call("fal", "error", error="ServerError"),
            _call("wavespeed", "skipped", reason=SERVABLE),
            _call("openai", "skipped", reason=SERVABLE),
        ],
    )
    budget["error"] = _gave_up("retry_budget", ["wavespeed", "openai"])
    wait_cap = _job(
        "job_b",
        "failed",
        refunded=26,
        attempts=[
            _call("fal", "error", error="RateLimited"),
            _call("wavespeed", "skipped", reason=SERVABLE),
        ],
    )
    wait_cap["error"] = _gave_up("wait_cap", ["wavespeed"])
    del wait_cap["error"]["servable"]  # named by its attempts only
    honest = _job("job_c", "failed", refunded=26, attempts=[_call("fal", "error")])
    honest["error"] = _gave_up("every_candidate_failed", None)
    jobs = [budget, wait_cap, honest, _job("job_d", "completed", attempts=[_call("fal", "ok")])]

    summary = summarize(_data(jobs))

    servable = summary["jobs"]["failed_while_servable"]
    assert servable["count"] == 2
    assert servable["by_reason"] == {"retry_budget": 1, "wait_cap": 1}
    assert servable["by_provider"] == {"wavespeed": 2, "openai": 1}
    assert servable["jobs"] == ["job_a", "job_b"]
    check = _summary_check(summary, SERVABLE_CHECK)
    assert not check["ok"]
    assert check["detail"] == (
        "2 failed jobs gave up while a candidate provider could still serve them "
        "(reasons: retry_budget 1, wait_cap 1; servable: wavespeed 2, openai 1)"
    )
    assert not summary["ok"]
    assert [c["name"] for c in summary["checks"] if not c["ok"]] == [SERVABLE_CHECK]
    markdown = render_markdown(summary)
    assert f"❌ **{SERVABLE_CHECK}**: 2 failed jobs" in markdown
    assert "**Failed while servable** (a candidate could still have served the job): 2;" in (
        markdown
    )
    assert "servable providers: wavespeed 2, openai 1." in markdown


def test_failed_jobs_not_servable_or_from_older_servers_pass_the_check() -> None:
    """A failed job whose error says ``failed_while_servable: false``, one whose error predates
    the field, and one with no error object at all count as zero: the check passes."""
    exhausted = _job("job_a", "failed", refunded=26, attempts=[_call("fal", "error")])
    exhausted["error"] = _gave_up("every_candidate_failed", None)
    older = _job("job_b", "failed", refunded=26, attempts=[_call("wavespeed", "error")])
    assert older["error"] == {"code": "no_provider_available"}  # a record from before the flag
    bare = _job("job_c", "failed", refunded=26)
    bare["error"] = None
    jobs = [exhausted, older, bare, _job("job_d", "completed", attempts=[_call("fal", "ok")])]

    summary = summarize(_data(jobs))

    assert summary["jobs"]["failed"] == 3
    assert summary["jobs"]["failed_while_servable"] == {
        "count": 0,
        "by_reason": {},
        "by_provider": {},
        "jobs": [],
    }
    check = _summary_check(summary, SERVABLE_CHECK)
    assert check["ok"]
    assert check["detail"].startswith("0 failed jobs")
    assert summary["ok"], [c for c in summary["checks"] if not c["ok"]]
    assert "**Failed while servable** (a candidate could still have served the job): 0." in (
        render_markdown(summary)
    )


def _with_image(job: dict[str, Any], key: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:8080/v1/media/{key}?expires=1&sig=ab"
    job["result"] = {**(job["result"] or {}), "images": [{"url": url}]}
    return job


def test_stored_outputs_must_match_the_images_of_completed_jobs() -> None:
    """A file no completed job shows (a canceled job's image left behind) and a completed
    job's image without its file each fail the check; a run that did not look has none."""
    jobs = [
        _with_image(_job("job_a", "completed", attempts=[_call("fal", "ok")]), "h/job_a-0.png"),
        _with_image(_job("job_b", "completed", attempts=[_call("fal", "ok")]), "h/job_b-0.png"),
        _job("job_c", "canceled", refunded=26),
    ]
    clean = summarize(_data(jobs, stored_outputs=["h/job_a-0.png", "h/job_b-0.png"]))
    assert _check(clean, "stored outputs match the results")
    assert clean["outputs"]["stored"] == clean["outputs"]["shown"] == 2

    left = summarize(
        _data(jobs, stored_outputs=["h/job_a-0.png", "h/job_b-0.png", "h/job_c-0.png"])
    )
    assert not _check(left, "stored outputs match the results")
    assert left["outputs"]["without_result"] == ["h/job_c-0.png"]
    assert not left["ok"]

    lost = summarize(_data(jobs, stored_outputs=["h/job_a-0.png"]))
    assert lost["outputs"]["missing"] == ["h/job_b-0.png"]
    assert not _check(lost, "stored outputs match the results")

    unseen = summarize(_data(jobs))
    assert unseen["outputs"] == {"available": False}
    assert "stored outputs match the results" not in [c["name"] for c in unseen["checks"]]


def test_a_scenario_about_retry_after_fails_when_the_farm_issued_too_few() -> None:
    """``min_retry_after_issued``: a run that never reached a limit tested no window, so its
    clean compliance check is not enough; the check says how many users ran."""
    data = _data([_job("job_a", "completed", attempts=[_call("fal", "ok")])])
    data.scenario = data.scenario.model_copy(update={"expect": Expect(min_retry_after_issued=3)})
    name = "Retry-After windows exercised (≥ 3)"
    summary = summarize(data)  # the farm issued 2
    assert _check(summary, "no request inside a Retry-After window")
    assert not _check(summary, name)
    detail = next(c["detail"] for c in summary["checks"] if c["name"] == name)
    assert detail.startswith("2 Retry-Afters issued")
    assert "10 users" in detail
    data.farm_stats["providers"]["wavespeed"]["retry_after_issued"] = 1
    assert _check(summarize(data), name)


def test_each_phase_counts_the_calls_its_providers_got_while_it_held() -> None:
    """A phase acts only on calls made while it holds: fal's storm (42–54 s) saw the two fal
    calls made in it; WaveSpeed's brownout (66–78 s) saw none, and the report says that such
    a phase tested nothing."""
    jobs = [
        _job("job_a", "completed", attempts=[_call("fal", "ok", at=45.0)]),
        _job("job_b", "completed", attempts=[_call("fal", "error", at=50.0), _call("fal", "ok")]),
        _job("job_c", "completed", attempts=[_call("wavespeed", "ok", at=90.0)]),
        _job("job_d", "completed", attempts=[_call("wavespeed", "skipped", at=70.0)]),
    ]
    summary = summarize(_data(jobs))
    calls = {p["name"]: p["calls"] for p in summary["scenario"]["phases"]}
    assert calls == {"fal 429 storm": 2, "fal down": 0, "WaveSpeed brownout": 0}
    report = render_markdown(summary)
    assert "| WaveSpeed brownout | wavespeed | 66 | 78 | 0: no traffic reached it" in report


def test_redrawing_a_report_names_a_folder_that_is_not_one(tmp_path: Path) -> None:
    """``python -m loadtests.report``: --help gives the usage, a folder without a run's raw
    records says so (it was a FileNotFoundError traceback)."""
    from loadtests.report import main

    with pytest.raises(SystemExit, match=r"usage: python -m loadtests\.report REPORT_FOLDER"):
        main(["--help"])
    with pytest.raises(SystemExit, match="not a load test's report folder"):
        main([str(tmp_path)])
