"""WaveSpeed's v3 API on the farm: task lifecycle, shapes, faults, and the official SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import wavespeed

from imagerouter.clock import FakeClock
from mockproviders import Farm

from .wire import Wire


async def _submit(wire: Wire, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await wire.wavespeed_submit(body)
    assert response.status == 200
    return await response.json()


async def test_submit_answers_created_task(farm: Farm, wire: Wire) -> None:
    """Submit answers {"code": 200, "message": "success", "data": {..., status: created}}."""
    farm.set_faults("wavespeed", {"generation_ms": 5000})
    answer = await _submit(wire)
    data = answer["data"]
    assert (answer["code"], answer["message"]) == (200, "success")
    assert data["status"] == "created"
    assert data["outputs"] == []
    assert data["error"] == ""
    assert data["model"] == "openai/gpt-image-1/text-to-image"
    expected = f"{farm.base_url('wavespeed')}/api/v3/predictions/{data['id']}/result"
    assert data["urls"]["get"] == expected
    assert set(data) >= {"has_nsfw_contents", "created_at", "timings"}


async def test_task_goes_created_processing_completed(
    fake_farm: Farm, fake_wire: Wire, clock: FakeClock
) -> None:
    """Polls see created, then processing, then completed with outputs (both poll paths)."""
    fake_farm.set_faults("wavespeed", {"generation_ms": 1000})
    task = (await _submit(fake_wire, {"prompt": "a cat", "size": "1024*1536"}))["data"]
    states = []
    for step in (0.0, 0.5, 0.6):
        clock.advance(step)
        poll = await (await fake_wire.wavespeed_poll(task["id"])).json()
        states.append(poll["data"]["status"])
    assert states == ["created", "processing", "completed"]
    short = f"{fake_farm.base_url('wavespeed')}/api/v3/predictions/{task['id']}"
    same = await fake_wire.session.get(short, headers={"Authorization": "Bearer ws-key"})
    data = (await same.json())["data"]
    assert data["status"] == "completed"
    assert len(data["outputs"]) == 1
    assert data["outputs"][0].endswith(".png")
    assert "/1024x1536/" in data["outputs"][0]
    assert data["has_nsfw_contents"] == [False]
    assert data["timings"]["inference"] == 1000


async def test_sync_mode_blocks_until_completed(farm: Farm, wire: Wire) -> None:
    """enable_sync_mode: the POST answers the completed task with its outputs."""
    farm.set_faults("wavespeed", {"generation_ms": 50})
    answer = await _submit(
        wire,
        {"prompt": "a cat", "aspect_ratio": "16:9", "resolution": "2k", "enable_sync_mode": True},
    )
    data = answer["data"]
    assert data["status"] == "completed"
    assert "/2048x1152/" in data["outputs"][0]


async def test_content_policy_fails_the_task(farm: Farm, wire: Wire) -> None:
    """content_policy: the task ends failed, with an NSFW/content-policy error."""
    farm.set_faults("wavespeed", {"error_rates": {"content_policy": 1.0}})
    task = (await _submit(wire))["data"]
    data = (await (await wire.wavespeed_poll(task["id"])).json())["data"]
    assert data["status"] == "failed"
    assert data["has_nsfw_contents"] == [True]
    assert "content policy" in data["error"].lower()
    assert "nsfw" in data["error"].lower()
    assert data["outputs"] == []


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "401"])
async def test_faults_use_the_code_message_data_wrapper(farm: Farm, wire: Wire, fault: str) -> None:
    """Each HTTP fault is {"code": status, "message": ..., "data": null}."""
    farm.set_faults("wavespeed", {"error_rates": {fault: 1.0}})
    response = await wire.wavespeed_submit()
    body = await response.json()
    assert response.status == int(fault)
    assert body["code"] == int(fault)
    assert body["data"] is None
    assert body["message"]


async def test_down_hits_polls_and_bad_input_is_400(farm: Farm, wire: Wire) -> None:
    """down answers polls 503 too; a missing prompt or bad size is a 400 wrapper."""
    task = (await _submit(wire))["data"]
    farm.set_faults("wavespeed", {"down": True})
    poll = await wire.wavespeed_poll(task["id"])
    assert poll.status == 503
    assert (await poll.json())["code"] == 503
    farm.set_faults("wavespeed", {})
    no_prompt = await wire.wavespeed_submit({"size": "1024*1024"})
    assert (no_prompt.status, (await no_prompt.json())["code"]) == (400, 400)
    bad_size = await wire.wavespeed_submit({"prompt": "x", "size": "big"})
    assert bad_size.status == 400


async def test_unknown_task_is_404(wire: Wire) -> None:
    """Polling an id the farm never issued is a 404 wrapper."""
    response = await wire.wavespeed_poll("no-such-task")
    assert response.status == 404
    assert (await response.json())["data"] is None


async def test_official_sdk_round_trip(farm: Farm) -> None:
    """wavespeed.Client with base_url at the farm runs a task, polling and in sync mode."""
    farm.set_faults("wavespeed", {"generation_ms": 100})
    client = wavespeed.Client(
        api_key="ws-sdk", base_url=farm.base_url("wavespeed"), max_connection_retries=0
    )
    model = "openai/gpt-image-2/text-to-image"
    polled = await asyncio.to_thread(
        client.run, model, {"prompt": "a lake", "size": "1024*1024"}, poll_interval=0.05
    )
    synced = await asyncio.to_thread(client.run, model, {"prompt": "a lake"}, enable_sync_mode=True)
    assert polled["outputs"][0].startswith(f"{farm.url}/_farm/media/1024x1024/")
    assert len(synced["outputs"]) == 1
    assert farm.stats()["providers"]["wavespeed"]["keys"]["ws-sdk"]["generations"] == 2


async def test_official_sdk_reports_failed_task(farm: Farm) -> None:
    """The SDK raises the farm's content-policy failure as a failed prediction."""
    farm.set_faults("wavespeed", {"error_rates": {"content_policy": 1.0}})
    client = wavespeed.Client(api_key="ws-sdk", base_url=farm.base_url("wavespeed"))
    with pytest.raises(RuntimeError, match="NSFW"):
        await asyncio.to_thread(client.run, "openai/gpt-image-1", {"prompt": "x"})
