"""fal's queue and run APIs on the farm: lifecycle, shapes, faults, and fal-client unchanged."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from typing import Any

import pytest

from imagerouter.clock import FakeClock
from mockproviders import Farm

from .wire import Wire

APP = "fal-ai/gpt-image-1/text-to-image"


async def _submit(wire: Wire, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await wire.fal_submit(body)
    assert response.status == 200
    return await response.json()


async def test_submit_returns_handle_urls_without_subpath(farm: Farm, wire: Wire) -> None:
    """Submit answers the four handle keys plus IN_QUEUE; the URLs drop the sub-path."""
    handle = await _submit(wire)
    base = f"{farm.url}/fal/queue/fal-ai/gpt-image-1/requests/{handle['request_id']}"
    assert handle["status"] == "IN_QUEUE"
    assert handle["queue_position"] == 0
    assert handle["response_url"] == base
    assert handle["status_url"] == base + "/status"
    assert handle["cancel_url"] == base + "/cancel"


async def test_urls_follow_the_host_the_request_came_in_on(farm: Farm, wire: Wire) -> None:
    """The handle URLs use the scheme and host:port the client used (here: localhost)."""
    url = farm.url.replace("127.0.0.1", "localhost") + f"/fal/queue/{APP}"
    response = await wire.session.post(
        url, json={"prompt": "x"}, headers={"Authorization": "Key k"}
    )
    handle = await response.json()
    assert handle["status_url"].startswith(farm.url.replace("127.0.0.1", "localhost"))


async def test_job_moves_through_queue_progress_and_completion(
    fake_farm: Farm, fake_wire: Wire, clock: FakeClock
) -> None:
    """Status is 202 IN_QUEUE, then 202 IN_PROGRESS with logs, then 200 COMPLETED; then result."""
    fake_farm.set_faults("fal", {"generation_ms": 1000})
    handle = await _submit(fake_wire, {"prompt": "a cat", "image_size": "landscape_4_3"})
    status_url = handle["status_url"]

    queued = await fake_wire.fal_get(status_url)
    assert queued.status == 202
    assert (await queued.json())["status"] == "IN_QUEUE"
    early = await fake_wire.fal_get(handle["response_url"])
    assert early.status == 400

    clock.advance(0.5)
    running = await fake_wire.fal_get(status_url + "?logs=true")
    body = await running.json()
    assert running.status == 202
    assert body["status"] == "IN_PROGRESS"
    assert body["logs"][0]["message"]

    clock.advance(0.6)
    done = await fake_wire.fal_get(status_url + "?logs=false")
    body = await done.json()
    assert done.status == 200
    assert body["status"] == "COMPLETED"
    assert "logs" in body
    assert body["metrics"]["inference_time"] == 1.0

    result = await (await fake_wire.fal_get(handle["response_url"])).json()
    image = result["images"][0]
    assert set(image) == {"url", "content_type", "file_name", "file_size", "width", "height"}
    assert (image["width"], image["height"]) == (1024, 768)
    assert result["has_nsfw_concepts"] == [False]
    assert result["prompt"] == "a cat"
    assert isinstance(result["seed"], int)
    png = await (await fake_wire.session.get(image["url"])).read()
    assert len(png) == image["file_size"]


async def test_cancel_outcomes(fake_farm: Farm, fake_wire: Wire, clock: FakeClock) -> None:
    """Cancel: 202 CANCELLATION_REQUESTED, then ALREADY_COMPLETED; unknown ids NOT_FOUND."""
    fake_farm.set_faults("fal", {"generation_ms": 1000})
    handle = await _submit(fake_wire)
    session, headers = fake_wire.session, {"Authorization": "Key fal-key"}

    first = await session.put(handle["cancel_url"], headers=headers)
    assert (first.status, await first.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    again = await session.put(handle["cancel_url"], headers=headers)
    assert (await again.json())["status"] == "ALREADY_COMPLETED"
    status = await (await fake_wire.fal_get(handle["status_url"])).json()
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == "client_cancelled"

    finished = await _submit(fake_wire)
    clock.advance(2)
    late = await session.put(finished["cancel_url"], headers=headers)
    assert (await late.json())["status"] == "ALREADY_COMPLETED"

    unknown = handle["cancel_url"].replace(handle["request_id"], "no-such-request")
    missing = await session.put(unknown, headers=headers)
    assert (missing.status, await missing.json()) == (404, {"status": "NOT_FOUND"})


async def test_sync_run_returns_the_result(farm: Farm, wire: Wire) -> None:
    """POST /fal/run/{app} answers the output directly."""
    response = await wire.session.post(
        f"{farm.url}/fal/run/{APP}",
        json={"prompt": "a cat", "image_size": {"width": 640, "height": 480}, "num_images": 2},
        headers={"Authorization": "Key k"},
    )
    result = await response.json()
    assert response.status == 200
    assert [(i["width"], i["height"]) for i in result["images"]] == [(640, 480), (640, 480)]


@pytest.mark.parametrize(
    ("image_size", "expected"),
    [("square_hd", (1024, 1024)), ("portrait_16_9", (576, 1024)), ("800x600", (800, 600))],
)
async def test_image_size_forms(
    farm: Farm, wire: Wire, image_size: str, expected: tuple[int, int]
) -> None:
    """image_size takes fal's presets and WxH strings."""
    handle = await _submit(wire, {"prompt": "x", "image_size": image_size})
    result = await (await wire.fal_get(handle["response_url"])).json()
    assert (result["images"][0]["width"], result["images"][0]["height"]) == expected


async def test_bad_input_is_422_detail_list(wire: Wire) -> None:
    """A bad image_size or missing prompt is fal's 422 {"detail": [{loc, msg, type}]}."""
    bad_size = await wire.fal_submit({"prompt": "x", "image_size": "huge"})
    detail = (await bad_size.json())["detail"][0]
    assert bad_size.status == 422
    assert detail["loc"] == ["body", "image_size"]
    no_prompt = await wire.fal_submit({"image_size": "square"})
    assert (await no_prompt.json())["detail"][0]["loc"] == ["body", "prompt"]


async def test_content_policy_shows_at_result_time(farm: Farm, wire: Wire) -> None:
    """content_policy: submit succeeds, status is COMPLETED, the result is a 422 violation."""
    farm.set_faults("fal", {"error_rates": {"content_policy": 1.0}})
    handle = await _submit(wire)
    status = await wire.fal_get(handle["status_url"])
    assert (await status.json())["status"] == "COMPLETED"
    result = await wire.fal_get(handle["response_url"])
    detail = (await result.json())["detail"][0]
    assert result.status == 422
    assert detail["type"] == "content_policy_violation"
    assert detail["loc"] == ["body", "prompt"]


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("500", 500, "internal_error"),
        ("502", 502, "runner_incomplete_response"),
        ("503", 503, "runner_scheduling_failure"),
    ],
)
async def test_infrastructure_errors_carry_error_type(
    farm: Farm, wire: Wire, fault: str, status: int, error_type: str
) -> None:
    """Random 5xx are {"detail", "error_type"} with the same type in X-Fal-Error-Type."""
    farm.set_faults("fal", {"error_rates": {fault: 1.0}})
    response = await wire.fal_submit()
    body = await response.json()
    assert response.status == status
    assert body["error_type"] == error_type
    assert isinstance(body["detail"], str)
    assert response.headers["X-Fal-Error-Type"] == error_type


async def test_429_and_401_in_fal_shape(farm: Farm, wire: Wire) -> None:
    """Random 429 has {"detail"} and retry-after; a bearer key is not fal's and gets 401."""
    farm.set_faults("fal", {"error_rates": {"429": 1.0}})
    limited = await wire.fal_submit()
    assert limited.status == 429
    assert isinstance((await limited.json())["detail"], str)
    assert limited.headers["retry-after"] == "1"
    assert "retry-after-ms" not in limited.headers
    bearer = await wire.session.post(
        f"{farm.base_url('fal')}/{APP}", json={"prompt": "x"}, headers={"Authorization": "Bearer k"}
    )
    assert bearer.status == 401
    assert "detail" in await bearer.json()


async def test_down_hits_polls_too(farm: Farm, wire: Wire) -> None:
    """down: polls of an existing job get 503 too, while random faults never touch polls."""
    handle = await _submit(wire)
    farm.set_faults("fal", {"error_rates": {"500": 1.0}})
    assert (await wire.fal_get(handle["status_url"])).status == 200
    farm.set_faults("fal", {"down": True})
    poll = await wire.fal_get(handle["status_url"])
    assert poll.status == 503
    assert poll.headers["X-Fal-Error-Type"] == "runner_scheduling_failure"


FAL_CLIENT_SCRIPT = textwrap.dedent(
    """
    import json
    import fal_client

    app = "fal-ai/gpt-image-1/text-to-image"
    out = {}
    result = fal_client.subscribe(app, {"prompt": "a cat", "image_size": "square_hd"})
    out["subscribe"] = result["images"][0]["width"]
    handle = fal_client.submit(app, {"prompt": "a dog"})
    out["status"] = type(fal_client.status(app, handle.request_id, with_logs=True)).__name__
    fal_client.cancel(app, handle.request_id)
    out["canceled"] = fal_client.status(app, handle.request_id).error_type
    second = fal_client.submit(app, {"prompt": "a bird", "num_images": 2})
    out["result"] = len(fal_client.result(app, second.request_id)["images"])
    out["run"] = fal_client.run(app, {"prompt": "sync"})["images"][0]["url"]
    print(json.dumps(out))
    """
)


async def test_fal_client_unchanged_over_tls() -> None:
    """fal-client, configured only by env vars, runs subscribe/submit/status/cancel/result/run."""
    async with Farm(tls=True) as farm:
        farm.set_faults("fal", {"generation_ms": 800})
        fal = farm.providers()["providers"]["fal"]
        assert farm.ca_bundle is not None
        env = {
            **os.environ,
            "FAL_KEY": "fal-sdk-key",
            "FAL_QUEUE_RUN_HOST": fal["queue_host"],
            "FAL_RUN_HOST": fal["run_host"],
            "SSL_CERT_FILE": farm.ca_bundle,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FAL_CLIENT_SCRIPT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()
        out = json.loads(stdout)
        assert out["subscribe"] == 1024
        assert out["status"] in ("Queued", "InProgress")
        assert out["canceled"] == "client_cancelled"
        assert out["result"] == 2
        assert out["run"].startswith(f"{farm.url}/_farm/media/")
        keys = farm.stats()["providers"]["fal"]["keys"]
        assert keys["fal-sdk-key"]["generations"] == 4
