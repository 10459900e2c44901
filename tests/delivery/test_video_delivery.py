"""A video job through the delivery paths: the Python client (submit with video fields, wait
by SSE, stream the MP4 to a file) and the signed webhook carrying the video result."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner
from standardwebhooks import Webhook

from imagerouter.cli import main
from imagerouter.client import AsyncClient
from tests.delivery.conftest import Api, Receiver
from tests.video.mp4check import parse_mp4


async def test_the_client_submits_a_video_waits_by_sse_and_streams_it_to_a_file(
    api: Api, tmp_path: Path
) -> None:
    """Video fields on submit; SSE sees queued → processing → completed; download_to writes
    the MP4 of the seconds asked."""
    token = await api.key(credits=1000)
    base = str(api.client.make_url("")).rstrip("/")
    async with AsyncClient(base, token) as client:
        queued = await client.submit(
            "a heron over a lake", model="seedance-lite", duration=10, resolution="480p"
        )
        assert queued.credits["charged"] == 40
        kinds = [event.type async for event in client.events(queued.id)]
        assert [k for k in kinds if k != "job.progress"] == [
            "job.queued",
            "job.processing",
            "job.completed",
        ]
        done = await client.wait(queued.id, timeout_s=20)
        target = tmp_path / "clip.mp4"
        size = await client.download_to(done.image_urls[0], target)
    assert size == target.stat().st_size
    facts = parse_mp4(target.read_bytes())
    assert facts.seconds == 10
    assert (facts.track_width, facts.track_height) == (854, 480)


async def test_the_webhook_of_a_video_job_carries_the_video(api: Api, receiver: Receiver) -> None:
    """job.completed arrives signed, with the video output (content type, seconds, URL)."""
    token = await api.key(credits=1000)
    status, endpoint = await api.call("PUT", "/v1/webhook", token, json={"url": receiver.url})
    assert status == 200, endpoint
    job = await api.submit(token, model="veo3-fast", prompt="a heron")
    (hit,) = await receiver.wait_hits(1)
    payload = Webhook(endpoint["secret"]).verify(hit.body, hit.headers)
    assert payload["type"] == "job.completed"
    data = payload["data"]
    assert data["id"] == job["id"]
    (video,) = data["result"]["images"]
    assert (video["content_type"], video["duration"]) == ("video/mp4", 8)
    answer = await api.client.get(video["url"])
    assert answer.status == 200
    assert parse_mp4(await answer.read()).seconds == 8


async def test_cli_generate_makes_a_video(api: Api) -> None:
    """``imagerouter generate --model seedance-lite --duration 10 --resolution 480p``: the job
    asked for exactly that, completed, and its MP4 URL printed."""
    token = await api.key(credits=1000)
    base = str(api.client.make_url("")).rstrip("/")
    args = [
        *("generate", "a heron", "--model", "seedance-lite", "--duration", "10"),
        *("--resolution", "480p", "--aspect-ratio", "9:16", "--url", base, "--key", token),
        "--json",
    ]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    asked = job["request"]
    assert (asked["duration"], asked["resolution"], asked["aspect_ratio"]) == (10, "480p", "9:16")
    assert job["result"]["images"][0]["url"].split("?")[0].endswith(".mp4")
