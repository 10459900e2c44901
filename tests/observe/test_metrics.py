"""``GET /metrics`` after a known scenario agrees with what the farm saw; so does the farm's."""

from __future__ import annotations

import json

import aiohttp

from imagerouter.server.keys import metrics_key
from imagerouter.server.observability import ServerMetrics, webhook_observer
from mockproviders import Farm
from tests.helpers.metrics import parse_metrics, sample
from tests.observe.conftest import ApiFactory
from tests.polling import eventually

BREAKER_AFTER_3 = {
    "router": {
        "deadline_s": 20,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "breaker": {"consecutive_failures": 3},
    }
}


async def _farm_get(farm: Farm, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(farm.url + path) as answer:
        return answer.status, await answer.text()


async def test_metrics_match_the_farm_after_failover_and_failures(
    make_api: ApiFactory, farm: Farm
) -> None:
    """Attempts, jobs, credits and breaker series agree with /_farm/stats and the job bodies."""
    api = await make_api(farm, BREAKER_AFTER_3)
    token = await api.key()
    farm.set_faults("fal", {"error_rates": {"503": 1.0}})
    prices = []
    for number in range(8):
        accepted = await api.submit(token, f"a lighthouse {number}")
        prices.append(accepted["credits"]["price"])
        body = await api.wait_final(token, accepted["id"])
        assert body["status"] == "completed"
    for name in ("wavespeed", "replicate"):  # flux-dev's last two candidates
        farm.set_faults(name, {"down": True})
    failed = [await api.submit(token, f"doomed {n}") for n in range(2)]
    for accepted in failed:
        assert (await api.wait_final(token, accepted["id"]))["status"] == "failed"
        prices.append(accepted["credits"]["price"])

    status, text = await _farm_get(farm, "/_farm/stats")
    assert status == 200
    seen = json.loads(text)["providers"]

    async def settled() -> bool:
        values = await api.metrics()
        return sample(values, "imagerouter_job_transitions_total", status="failed") == 2

    await eventually(settled)
    values = await api.metrics()
    attempts = "imagerouter_provider_attempts_total"
    fal_503 = sample(
        values, attempts, provider="fal", outcome="error", error_class="ProviderUnavailable"
    )
    assert fal_503 == seen["fal"]["by_status"]["503"]
    assert fal_503 == seen["fal"]["generations"]  # every call fal saw is counted, once
    assert fal_503 < 10  # the breaker held fal off for most jobs
    ws_ok = sample(values, attempts, provider="wavespeed", outcome="ok", error_class="")
    assert ws_ok == 8
    ws_errors = sample(
        values, attempts, provider="wavespeed", outcome="error", error_class="ProviderUnavailable"
    )
    assert ws_errors == seen["wavespeed"]["by_status"]["503"]  # down: submits fail, no polls
    assert ws_ok + ws_errors == seen["wavespeed"]["generations"]
    assert sample(values, attempts, provider="openai", outcome="ok", error_class="") == 0
    assert sample(values, "imagerouter_breaker_state", provider="fal", state="open") == 1
    assert (
        sample(values, "imagerouter_breaker_transitions_total", provider="fal", to_state="open")
        >= 1
    )
    assert sample(values, "imagerouter_provider_skips_total", provider="fal", reason="breaker") >= 5

    give_ups = [v for (name, _), v in values.items() if name == "imagerouter_router_give_ups_total"]
    assert sum(give_ups) == 2  # the two doomed jobs, each counted once
    servable = "imagerouter_jobs_failed_while_servable_total"
    assert not [v for (name, _), v in values.items() if name == servable and v]  # none could be

    calls = "imagerouter_provider_calls_total"
    assert sample(values, calls, provider="fal", why="first") >= 1
    assert sample(values, calls, provider="wavespeed", why="failover") >= 1
    made = sum(v for (name, _), v in values.items() if name == calls)
    assert made == sum(v for (name, labels), v in values.items() if name == attempts)
    assert sample(values, "imagerouter_job_transitions_total", status="queued") == 10
    assert sample(values, "imagerouter_job_transitions_total", status="completed") == 8
    assert sample(values, "imagerouter_job_duration_seconds_count", status="completed") == 8
    assert sample(values, "imagerouter_job_duration_seconds_count", status="failed") == 2
    assert (
        sample(values, "imagerouter_job_submit_duration_seconds_count", route="jobs.submit") == 10
    )
    assert sample(values, "imagerouter_credits_debited_total") == sum(prices)
    assert sample(values, "imagerouter_credits_refunded_total") == sum(prices[-2:])
    assert sample(values, "imagerouter_jobs_active", status="queued") == 0
    assert sample(values, "imagerouter_jobs_active", status="processing") == 0
    assert ("imagerouter_jobs_in_flight", ()) in values
    assert ("imagerouter_retry_budget_available", (("provider", "fal"),)) in values
    assert ("imagerouter_provider_health_score", (("provider", "fal"),)) in values
    assert ("imagerouter_retry_after_cooldown_seconds", (("provider", "fal"),)) in values


async def test_labels_are_bounded_no_job_ids_or_prompts(make_api: ApiFactory, farm: Farm) -> None:
    """No label carries a job id, an API key or a prompt; every family is imagerouter_*."""
    api = await make_api(farm)
    token = await api.key()
    accepted = await api.submit(token, "prompt-that-must-not-be-a-label")
    await api.wait_final(token, accepted["id"])
    answer = await api.client.get("/metrics")
    text = await answer.text()
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert accepted["id"] not in text
    assert "prompt-that-must-not-be-a-label" not in text
    assert token not in text
    for name, labels in parse_metrics(text):
        assert name.startswith("imagerouter_")
        assert {key for key, _ in labels} <= {
            "provider", "outcome", "error_class", "reason", "to_state", "state", "status", "why",
            "route", "method", "code", "code_class", "le",
        }  # fmt: skip


async def test_webhook_observer_counts_deliveries(make_api: ApiFactory, farm: Farm) -> None:
    """The hook for webhook delivery counts by outcome and status class; odd outcomes fold."""
    api = await make_api(farm)
    observe = webhook_observer(api.app)
    assert observe == api.app[metrics_key].observe_webhook_delivery
    observe("succeeded", status=204, duration_s=0.05)
    observe("retry", status=503, duration_s=0.2)
    observe("retry", status=None)
    observe("Job 123 <weird>", status=500)
    values = await api.metrics()
    deliveries = "imagerouter_webhook_deliveries_total"
    assert sample(values, deliveries, outcome="succeeded", code_class="2xx") == 1
    assert sample(values, deliveries, outcome="retry", code_class="5xx") == 1
    assert sample(values, deliveries, outcome="retry", code_class="none") == 1
    assert sample(values, deliveries, outcome="other", code_class="5xx") == 1
    assert (
        sample(values, "imagerouter_webhook_delivery_duration_seconds_count", outcome="succeeded")
        == 1
    )


def test_webhook_observer_is_a_no_op_without_metrics() -> None:
    """An app built without observability gets a callable that does nothing."""
    from aiohttp import web

    webhook_observer(web.Application())("succeeded", status=200)


async def test_farm_metrics_mirror_farm_stats(make_api: ApiFactory, farm: Farm) -> None:
    """``GET /_farm/metrics`` says what ``GET /_farm/stats`` says, per provider."""
    api = await make_api(farm)
    token = await api.key()
    farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 1})
    for number in range(3):
        accepted = await api.submit(token, f"p{number}")
        await api.wait_final(token, accepted["id"])
    status, text = await _farm_get(farm, "/_farm/metrics")
    assert status == 200
    values = parse_metrics(text)
    stats = farm.stats()["providers"]
    for provider, entry in stats.items():
        assert sample(values, "mockfarm_requests_total", provider=provider) == entry["requests"]
        assert (
            sample(values, "mockfarm_generations_total", provider=provider) == entry["generations"]
        )
        assert (
            sample(values, "mockfarm_retry_after_issued_total", provider=provider)
            == entry["retry_after_issued"]
        )
        assert (
            sample(values, "mockfarm_inside_retry_after_total", provider=provider)
            == entry["inside_retry_after"]
        )
        for code, count in entry["by_status"].items():
            assert (
                sample(values, "mockfarm_responses_total", provider=provider, status=code) == count
            )
    assert stats["fal"]["by_status"]["429"] >= 1
    assert sample(values, "mockfarm_provider_down", provider="fal") == 0
    farm.set_faults("fal", {"down": True})
    _, text = await _farm_get(farm, "/_farm/metrics")
    assert sample(parse_metrics(text), "mockfarm_provider_down", provider="fal") == 1


def test_job_events_feed_states_durations_and_credits() -> None:
    """Store events alone drive the job families: a priced queued event is debited at once,
    re-queues count by reason, and the active gauge follows each job to its end."""
    from imagerouter.jobs.types import JobEvent

    metrics = ServerMetrics()

    def event(n: int, job: str, status: str, at: float, **data: object) -> JobEvent:
        return JobEvent(n, job, "acct", f"job.{status}", at, {"status": status, **data})

    metrics.observe_job_events([event(1, "job_a", "queued", 100.0, price=26)])
    metrics.observe_job_events([event(2, "job_b", "queued", 100.5, price=6)])
    metrics.observe_job_events([event(3, "job_a", "processing", 100.25, run=1)])
    values = parse_metrics(metrics.render().decode())
    assert sample(values, "imagerouter_jobs_active", status="queued") == 1
    assert sample(values, "imagerouter_jobs_active", status="processing") == 1
    assert sample(values, "imagerouter_credits_debited_total") == 32
    assert sample(values, "imagerouter_job_queue_wait_seconds_sum") == 0.25
    metrics.observe_job_events(
        [
            event(4, "job_a", "queued", 101.0, reason="lease_expired"),
            event(5, "job_a", "processing", 101.5, run=2),
            event(6, "job_a", "completed", 102.0, provider="fal"),
            event(7, "job_b", "failed", 103.5, refunded=6, error={"code": "no_provider"}),
        ]
    )
    values = parse_metrics(metrics.render().decode())
    assert sample(values, "imagerouter_jobs_requeued_total", reason="lease_expired") == 1
    assert sample(values, "imagerouter_job_queue_wait_seconds_count") == 1  # first lease only
    assert sample(values, "imagerouter_job_duration_seconds_sum", status="completed") == 2.0
    assert sample(values, "imagerouter_job_duration_seconds_sum", status="failed") == 3.0
    assert sample(values, "imagerouter_credits_refunded_total") == 6
    assert sample(values, "imagerouter_jobs_active", status="queued") == 0
    assert sample(values, "imagerouter_jobs_active", status="processing") == 0
    assert sample(values, "imagerouter_job_transitions_total", status="queued") == 3
