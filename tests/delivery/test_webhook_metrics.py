"""Every webhook attempt the delivery worker makes is counted in ``GET /metrics``, by outcome
and status class, and timed, on SQLite and on PostgreSQL."""

from __future__ import annotations

from tests.delivery.conftest import Api, ApiFactory, Receiver
from tests.helpers.metrics import Samples, parse_metrics, sample
from tests.polling import eventually
from tests.server.conftest import store_url

__all__ = ["store_url"]  # the fixture, run on SQLite and on PostgreSQL

DELIVERIES = "imagerouter_webhook_deliveries_total"
DURATIONS = "imagerouter_webhook_delivery_duration_seconds_count"


async def _metrics(api: Api) -> Samples:
    answer = await api.client.get("/metrics")
    assert answer.status == 200
    return parse_metrics(await answer.text())


async def test_each_attempt_is_counted_by_outcome_and_code_class_and_timed(
    store_url: str | None, make_api: ApiFactory, receiver: Receiver
) -> None:
    """A receiver answering 503, then 500, then 204 gets three attempts: /metrics counts two
    retries (5xx) and one success (2xx), each with a duration; a job whose webhook URL
    answers 410 adds one ``disabled`` (4xx)."""
    api = await make_api(**({"store": store_url} if store_url else {}))
    receiver.script = [(503, {}), (500, {})]
    token = await api.key()
    status, body = await api.call("PUT", "/v1/webhook", token, json={"url": receiver.url})
    assert status == 200, body
    job = await api.submit(token)
    await api.wait_delivery(token, job["id"], ("succeeded",))
    receiver.script = [(410, {})]
    gone = await api.submit(token)
    await api.wait_delivery(token, gone["id"], ("disabled",))

    async def counted() -> Samples | None:
        values = await _metrics(api)
        return values if sample(values, DELIVERIES, outcome="disabled", code_class="4xx") else None

    values = await eventually(counted, timeout_s=10, what="the attempts to be counted")
    assert sample(values, DELIVERIES, outcome="retry", code_class="5xx") == 2
    assert sample(values, DELIVERIES, outcome="succeeded", code_class="2xx") == 1
    assert sample(values, DELIVERIES, outcome="disabled", code_class="4xx") == 1
    assert sum(v for (name, _), v in values.items() if name == DELIVERIES) == 4
    assert sample(values, DURATIONS, outcome="retry") == 2
    assert sample(values, DURATIONS, outcome="succeeded") == 1
    assert sample(values, DURATIONS, outcome="disabled") == 1
