"""A Retry-After window outlives the server that was given it: a server started on the same
store (a restart on SQLite, any replica on PostgreSQL) holds off the provider until the window
ends, before any job runs."""

from __future__ import annotations

from imagerouter.server.keys import store_key
from mockproviders import Farm
from tests.helpers.api import ApiFactory

BODY = {"model": "flux-dev", "prompt": "a lighthouse", "routing": {"only": ["fal"]}}


async def test_a_restarted_server_does_not_call_into_a_window_it_was_given(
    farm: Farm, make_api: ApiFactory, store_url: str | None
) -> None:
    """fal answers 429 with ``Retry-After: 30``; the server is stopped and another started on
    the same store, fal now healthy but its window running: the new server's job does not
    call fal (its attempt says why), and the farm counts nothing inside the window.

    Before, the window lived in the first server's memory: the second called fal at once (a
    black-box pass: 11 calls into a 30 s window after a restart)."""
    overrides = {} if store_url is None else {"store": store_url}
    farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 30})
    first = await make_api(**overrides)
    token = await first.key(credits=1000)
    status, job = await first.post(token, "/v1/jobs", BODY)
    assert status == 202, job
    await first.wait_final(token, job["id"])
    await first.client.close()  # the server stops (its journal writes what it still holds)

    farm.set_faults("fal", {})
    calls = farm.stats()["providers"]["fal"]["requests"]
    second = await make_api(**overrides)
    token = await second.key(account="other", credits=1000)
    status, job = await second.post(token, "/v1/jobs", BODY)
    assert status == 202, job
    final = await second.wait_final(token, job["id"])
    assert final["status"] == "failed", final
    reasons = [a.get("reason") or "" for a in final.get("attempts", [])]
    assert any(r.startswith("Retry-After cooldown until") for r in reasons), final
    fal = farm.stats()["providers"]["fal"]
    assert fal["requests"] == calls, "the new server called fal inside its window"
    assert fal["inside_retry_after"] == 0
    windows = await second.app[store_key].live_windows()
    assert any('"cooldown"' in w and '"fal"' in w for w in windows), windows


async def test_a_restarted_server_waits_for_a_budget_its_predecessor_spent(
    farm: Farm, make_api: ApiFactory
) -> None:
    """OpenAI announces a budget of one request a minute (``x-ratelimit-*``); the first
    server's job spends it. The next server on the store does not call OpenAI before the
    reset (its job fails at once: the reset is past its deadline), where it would have drawn
    a 429."""
    farm.set_faults("openai", {"rate_limit": {"rpm": 1, "burst": 1}})
    body = {"model": "gpt-image-2", "prompt": "a lighthouse", "routing": {"only": ["openai"]}}
    first = await make_api()
    token = await first.key(credits=1000)
    status, job = await first.post(token, "/v1/jobs", body)
    assert status == 202, job
    assert (await first.wait_final(token, job["id"]))["status"] == "completed"
    await first.client.close()

    calls = farm.stats()["providers"]["openai"]["requests"]
    second = await make_api()
    token = await second.key(account="other", credits=1000)
    status, job = await second.post(token, "/v1/jobs", body)
    assert status == 202, job
    final = await second.wait_final(token, job["id"])
    assert final["status"] == "failed", final
    openai = farm.stats()["providers"]["openai"]
    assert openai["requests"] == calls, "the new server called OpenAI with its budget spent"
    assert openai["by_status"].get("429", 0) == 0
