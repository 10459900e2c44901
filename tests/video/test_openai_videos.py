"""The official ``openai`` SDK's ``client.videos`` against ``/v1/videos``, the farm behind it:
create, poll, download, list, delete; OpenAI's Video object exactly; errors in OpenAI's shape."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from mockproviders import Farm
from tests.helpers.api import Api
from tests.video.mp4check import parse_mp4

#: The SDK marks its video methods deprecated (Sora's shutdown): not this server's concern.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

#: The fields of OpenAI's Video object (openai/types/video.py).
VIDEO_FIELDS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "seconds",
    "size",
    "remixed_from_video_id",
    "error",
}


def _client(api: Api, token: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key=token, max_retries=0)


async def test_the_sdk_creates_polls_and_downloads_a_video(api: Api) -> None:
    """create (multipart) → queued; poll → completed; download_content → the MP4 asked for;
    the wallet is charged 8 s of 720p with sound once."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    video = await client.videos.create(
        model="veo3-fast",
        prompt="a heron takes off from a misty lake",
        seconds="8",
        size="720x1280",
    )
    assert video.object == "video"
    assert video.status == "queued"
    assert (video.seconds, video.size, video.model) == ("8", "720x1280", "veo3-fast")
    done = await client.videos.poll(video.id, poll_interval_ms=50)
    assert done.status == "completed", done
    assert done.progress == 100
    assert done.completed_at is not None
    assert done.expires_at is not None
    assert done.expires_at > done.completed_at
    content = await client.videos.download_content(video.id)
    facts = parse_mp4(content.content)
    assert facts.seconds == 8
    assert (facts.track_width, facts.track_height) == (720, 1280)
    job = await (await api.client.get(f"/v1/jobs/{video.id}", headers=api.auth(token))).json()
    assert job["credits"] == {"price": 288, "charged": 288, "refunded": 0}
    assert job["request"]["aspect_ratio"] == "9:16"


async def test_the_video_object_has_exactly_openais_fields(api: Api) -> None:
    """The raw JSON of a retrieve: OpenAI's fields, nothing missing."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    video = await client.videos.create(model="seedance-lite", prompt="a lighthouse at dusk")
    answer = await api.client.get(f"/v1/videos/{video.id}", headers=api.auth(token))
    body = await answer.json()
    assert set(body) == VIDEO_FIELDS
    assert body["seconds"] == "5"
    assert body["size"] == "1280x720"


async def test_the_sdk_lists_and_pages_videos_and_skips_image_jobs(api: Api) -> None:
    """Three videos and an image job: list(limit=2) pages through the three, newest first."""
    token = await api.key(credits=5000)
    client = _client(api, token)
    ids = []
    for number in range(3):
        created = await client.videos.create(model="seedance-lite", prompt=f"clip {number}")
        ids.append(created.id)
    status, _ = await api.post(token, "/v1/jobs", {"model": "flux-dev", "prompt": "a pier"})
    assert status == 202
    seen = [video.id async for video in client.videos.list(limit=2)]
    assert seen == list(reversed(ids))
    # one reader of query strings for every list route: a parameter given twice is refused
    # (a 400 in OpenAI's shape, as this route answers every bad value)
    answer = await api.client.get("/v1/videos?limit=1&limit=50", headers=api.auth(token))
    assert answer.status == 400
    assert (await answer.json())["error"]["param"] == "limit"
    # a cursor that is none of the caller's videos (unknown, or an image job) is named, not
    # an empty page; so is a limit in other digits than ASCII's (once a 500)
    jobs = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    image_job = next(job["id"] for job in jobs["data"] if job["request"]["model"] == "flux-dev")
    for query in ("after=zzz", f"after={image_job}", "limit=²"):
        answer = await api.client.get(f"/v1/videos?{query}", headers=api.auth(token))
        assert answer.status == 400, query
        assert (await answer.json())["error"]["param"] == query.split("=")[0]
    assert [v.id async for v in client.videos.list(after=ids[2], limit=5)] == ids[1::-1]


async def test_delete_cancels_a_queued_video_and_refunds_it(api: Api, farm: Farm) -> None:
    """A video held at the provider: delete answers deleted, the job is canceled and refunded."""
    farm.set_faults("fal", {"generation_ms": 30_000})
    token = await api.key(credits=1000)
    client = _client(api, token)
    video = await client.videos.create(model="veo3-fast", prompt="a slow sunrise", seconds="8")
    deleted = await client.videos.delete(video.id)
    assert deleted.deleted is True
    assert deleted.object == "video.deleted"
    job = await api.wait_final(token, video.id)
    assert job["status"] == "canceled"
    assert job["credits"]["refunded"] == job["credits"]["charged"]
    failed = await client.videos.retrieve(video.id)
    assert failed.status == "failed"
    assert failed.error is not None


async def test_a_duration_the_model_lacks_is_an_openai_error_naming_seconds(api: Api) -> None:
    """seconds=4 on Veo 3 Fast (8 s only): the SDK raises naming 'seconds', the field it
    sent (the job's own name for it is duration); no charge."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await client.videos.create(model="veo3-fast", prompt="a heron", seconds="4")
    assert caught.value.body["param"] == "seconds"
    assert caught.value.body["message"].startswith("seconds: ")
    await api.assert_nothing_stored(token, 1000)


async def test_an_image_model_is_refused_by_the_videos_route(api: Api) -> None:
    """model=flux-dev: 400, param model."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="flux-dev", prompt="a heron")
    assert caught.value.body["param"] == "model"


async def test_a_first_frame_upload_becomes_the_jobs_image_url(api: Api) -> None:
    """input_reference as a file upload reaches the provider as a data URL first frame."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    png = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 32
    video = await client.videos.create(
        model="seedance-lite",
        prompt="the frame comes alive",
        input_reference=("first.png", png, "image/png"),
    )
    job = await (await api.client.get(f"/v1/jobs/{video.id}", headers=api.auth(token))).json()
    assert job["request"]["image_url"].startswith("data:image/png;base64,")
    done = await client.videos.poll(video.id, poll_interval_ms=50)
    assert done.status == "completed", done


async def test_the_images_route_refuses_a_video_model(api: Api) -> None:
    """client.images.generate(model='veo3-fast'): 400, param model, nothing charged."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model="veo3-fast", prompt="a heron")
    assert caught.value.body["param"] == "model"
    await api.assert_nothing_stored(token, 1000)


async def test_a_retried_create_with_its_idempotency_key_is_one_video_charged_once(
    api: Api,
) -> None:
    """The same JSON create twice with one Idempotency-Key: the same video, one debit."""
    token = await api.key(credits=1000)
    body = {"model": "seedance-lite", "prompt": "a kite", "seconds": "10", "resolution": "480p"}
    headers = api.auth(token, **{"Idempotency-Key": "video-1"})
    first = await api.client.post("/v1/videos", json=body, headers=headers)
    again = await api.client.post("/v1/videos", json=body, headers=headers)
    assert first.status == again.status == 200
    assert (await first.json())["id"] == (await again.json())["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    account = await (await api.client.get("/v1/account", headers=api.auth(token))).json()
    assert account["balance"] == 1000 - 40


async def test_a_first_frame_upload_above_2_mib_is_413_naming_it(api: Api) -> None:
    """A 3 MiB input_reference: refused with its param named, nothing charged."""
    token = await api.key(credits=1000)
    client = _client(api, token)
    big = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * (3 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.videos.create(
            model="seedance-lite", prompt="x", input_reference=("big.png", big, "image/png")
        )
    assert caught.value.status_code == 413
    assert caught.value.body["param"] == "input_reference"
    await api.assert_nothing_stored(token, 1000)


async def test_a_malformed_form_is_a_400_in_openais_shape(api: Api) -> None:
    """A multipart body without its boundary, or whose boundary never comes, is the client's
    mistake: a 400 in OpenAI's shape naming the body, nothing charged; not a 500."""
    token = await api.key(credits=10_000)
    for content_type, body in (
        ("multipart/form-data; boundary=zz", b"garbage"),
        ("multipart/form-data", b"--zz\r\n\r\n"),
        ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n"),
    ):
        answer = await api.client.post(
            "/v1/videos",
            data=body,
            headers={**api.auth(token), "Content-Type": content_type},
        )
        assert answer.status == 400, (content_type, body, await answer.text())
        error = (await answer.json())["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "body")
        assert "multipart" in error["message"]
    await api.assert_nothing_stored(token, 10_000)
