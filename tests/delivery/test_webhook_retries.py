"""At-least-once delivery: the retry schedule, Retry-After, 410, other 4xx, restarts, replay."""

from __future__ import annotations

import itertools
import json

from imagerouter.webhooks import DEFAULT_SCHEDULE_S
from tests.delivery.conftest import Api, ApiFactory, Receiver

JITTER = 0.2


async def _hook(api: Api, token: str, url: str) -> None:
    status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
    assert status == 200, body


def _assert_follows_schedule(log: list[dict], delays: tuple[float, ...], scale: float) -> None:
    """Each retry's recorded delay is the schedule's (scaled) ± jitter, and each attempt was
    due exactly when the previous one scheduled it."""
    for index, (attempt, following) in enumerate(itertools.pairwise(log)):
        nominal = delays[index + 1] * scale
        assert attempt["outcome"] == "retry"
        assert nominal * (1 - JITTER) <= attempt["next_delay_s"] <= nominal * (1 + JITTER)
        assert following["scheduled_at"] == attempt["next_attempt_at"]
        assert attempt["next_attempt_at"] >= attempt["started_at"] + attempt["next_delay_s"]
        assert following["started_at"] >= following["scheduled_at"]


async def test_failures_then_success_follow_the_schedule_with_one_webhook_id(
    api: Api, receiver: Receiver
) -> None:
    """A receiver that fails three times (503, 500, 502) and then succeeds gets four attempts
    with the same webhook-id, due at the schedule's delays (scaled 1000× down) ± 20 %."""
    receiver.script = [(503, {}), (500, {}), (502, {})]
    token = await api.key()
    await _hook(api, token, receiver.url)
    job = await api.submit(token)
    hits = await receiver.wait_hits(4)
    assert len({hit.headers["webhook-id"] for hit in hits}) == 1
    assert len({hit.body for hit in hits}) == 1  # the same bytes every time
    delivery = await api.wait_delivery(token, job["id"], ("succeeded",))
    log = delivery["log"]
    assert [a["outcome"] for a in log] == ["retry", "retry", "retry", "succeeded"]
    assert [a["status"] for a in log] == [503, 500, 502, 204]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert all(a["error"] for a in log[:3])
    assert log[3]["error"] is None
    _assert_follows_schedule(log, DEFAULT_SCHEDULE_S, 0.001)
    assert delivery["id"] == hits[0].headers["webhook-id"]


async def test_a_restart_mid_schedule_still_delivers(
    make_api: ApiFactory, receiver: Receiver
) -> None:
    """A delivery that failed once is still sent, with the same webhook-id, by a new app on
    the same data dir after the first one stopped."""
    receiver.script = [(503, {})]
    schedule = {"webhook_retry_schedule_s": [0, 2.5], "webhook_retry_scale": 1.0}
    first = await make_api(**schedule)
    token = await first.key()
    await _hook(first, token, receiver.url)
    job = await first.submit(token)
    await receiver.wait_hits(1)
    pending = await first.wait_delivery(token, job["id"], ("pending",))
    assert pending["log"][0]["outcome"] == "retry"
    await first.client.close()  # the app stops before the retry is due
    assert len(receiver.hits) == 1
    second = await make_api(**schedule)
    delivery = await second.wait_delivery(token, job["id"], ("succeeded",))
    assert [a["outcome"] for a in delivery["log"]] == ["retry", "succeeded"]
    assert delivery["log"][1]["scheduled_at"] == delivery["log"][0]["next_attempt_at"]
    assert len({hit.headers["webhook-id"] for hit in receiver.hits}) == 1
    assert len(receiver.hits) == 2


async def test_a_jobs_own_url_that_answered_gone_is_registered_again_by_a_new_job(
    api: Api, receiver: Receiver
) -> None:
    """A job's own ``webhook_url`` answering 410 is disabled for the account, as the account's
    URL is; a later job naming that URL asks for it anew and gets its webhook (where it was
    accepted, then never sent, with no way back but swapping the account's URL)."""
    receiver.script = [(410, {})]
    token = await api.key()
    await api.call("POST", "/v1/webhook/secret/rotate", token, json={})
    own = f"{receiver.url}?job=own"
    first = await api.submit(token, webhook_url=own)
    await api.wait_delivery(token, first["id"], ("disabled",))
    second = await api.submit(token, webhook_url=own)
    sent = await api.wait_delivery(token, second["id"], ("succeeded",))
    assert sent["url"] == own
    assert len(receiver.hits) == 2


async def test_gone_disables_the_url_until_registered_again(api: Api, receiver: Receiver) -> None:
    """410 Gone stops retries and disables the URL for the account: the next job's webhook
    is not sent, until PUT /v1/webhook registers the URL again."""
    receiver.script = [(410, {})]
    token = await api.key()
    await _hook(api, token, receiver.url)
    first = await api.submit(token)
    gone = await api.wait_delivery(token, first["id"], ("disabled",))
    assert [a["outcome"] for a in gone["log"]] == ["disabled"]
    _, webhook = await api.call("GET", "/v1/webhook", token)
    assert webhook["enabled"] is False
    assert "410" in webhook["disabled_reason"]
    second = await api.submit(token)
    await api.wait_final(token, second["id"])
    skipped = await api.wait_delivery(token, second["id"], ("disabled",))
    assert skipped["log"] == []
    assert "410" in skipped["last_error"]
    status, refused = await api.call("POST", f"/v1/jobs/{second['id']}/deliveries/replay", token)
    assert (status, refused["error"]["code"]) == (409, "webhook_disabled")
    assert len(receiver.hits) == 1
    await _hook(api, token, receiver.url)
    status, replayed = await api.call("POST", f"/v1/jobs/{second['id']}/deliveries/replay", token)
    assert status == 202, replayed
    sent = await api.wait_delivery(token, second["id"], ("succeeded",))
    assert sent["log"][0]["trigger"] == "replay"
    assert len(receiver.hits) == 2


async def test_other_client_errors_stop_retries(api: Api, receiver: Receiver) -> None:
    """A 400 (any 4xx but 429 and 410) ends the delivery after one attempt."""
    receiver.script = [(400, {})]
    token = await api.key()
    await _hook(api, token, receiver.url)
    job = await api.submit(token)
    failed = await api.wait_delivery(token, job["id"], ("failed",))
    assert [(a["outcome"], a["status"]) for a in failed["log"]] == [("failed", 400)]
    assert failed["next_attempt_at"] is None
    assert len(receiver.hits) == 1


async def test_retry_after_is_honoured_within_the_schedule(
    make_api: ApiFactory, receiver: Receiver
) -> None:
    """A 429's Retry-After sets the next delay when it lies between the scheduled delay and
    twice that, and is clamped to twice the scheduled delay when longer. The receiver's pause
    (at most ``webhook_pause_max_s``, 0.5 s here) still holds the next request back until it
    ends, without using an attempt: three attempts in all."""
    receiver.script = [(429, {"Retry-After": "1"}), (429, {"Retry-After": "3600"})]
    api = await make_api(
        webhook_retry_schedule_s=[0, 0.8, 0.05], webhook_retry_scale=1.0, webhook_pause_max_s=0.5
    )
    token = await api.key()
    await _hook(api, token, receiver.url)
    job = await api.submit(token)
    delivery = await api.wait_delivery(token, job["id"], ("succeeded",))
    first, second, third = delivery["log"]
    assert (first["status"], first["retry_after"], first["next_delay_s"]) == (429, 1.0, 1.0)
    assert second["retry_after"] == 3600.0
    assert 2 * 0.05 * (1 - JITTER) <= second["next_delay_s"] <= 2 * 0.05 * (1 + JITTER)
    assert third["outcome"] == "succeeded"
    assert third["attempt"] == 3
    first_hit, second_hit, third_hit = receiver.hits
    assert second_hit.at - first_hit.at >= 1.0 - 0.05
    assert third_hit.at - second_hit.at >= 0.5 - 0.05  # the pause, not the 0.1 s retry


async def test_replay_resends_the_same_webhook(api: Api, receiver: Receiver) -> None:
    """Replaying a delivered webhook sends the same webhook-id and body again, logged as a
    replay; a job without any webhook has nothing to replay."""
    token = await api.key()
    await _hook(api, token, receiver.url)
    job = await api.submit(token)
    await api.wait_delivery(token, job["id"], ("succeeded",))
    status, replay = await api.call("POST", f"/v1/jobs/{job['id']}/deliveries/replay", token)
    assert status == 202
    assert replay["status"] == "pending"
    assert replay["log"][0]["trigger"] == "scheduled"  # the log so far (the replay may follow)
    first, second = await receiver.wait_hits(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert json.loads(second.body)["data"]["id"] == job["id"]
    done = await api.wait_delivery(token, job["id"], ("succeeded",))
    assert [a["trigger"] for a in done["log"]] == ["scheduled", "replay"]
    await api.call("DELETE", "/v1/webhook", token)
    other = await api.submit(token)
    await api.wait_final(token, other["id"])
    status, missing = await api.call("POST", f"/v1/jobs/{other['id']}/deliveries/replay", token)
    assert (status, missing["error"]["code"]) == (404, "delivery_not_found")
