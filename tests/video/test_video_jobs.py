"""Video jobs through the unified job API and the same wallet: priced per second, served by
the farm's fal and WaveSpeed video endpoints, failed over, refunded exactly once, stored."""

from __future__ import annotations

from typing import Any

import pytest

from mockproviders import Farm
from tests.helpers.api import Api
from tests.video.mp4check import parse_mp4

VEO = {"model": "veo3-fast", "prompt": "a heron takes off from a misty lake"}


async def _account(api: Api, token: str) -> dict:
    return await (await api.client.get("/v1/account", headers=api.auth(token))).json()


async def _download(api: Api, url: str) -> bytes:
    answer = await api.client.get(url)
    assert answer.status == 200, await answer.text()
    assert answer.headers["Content-Type"].startswith("video/mp4")
    return await answer.read()


@pytest.mark.parametrize(
    ("request_fields", "provider", "price", "seconds"),
    [
        ({}, "fal", 8 * 36, 8),
        ({"generate_audio": False, "aspect_ratio": "9:16"}, "fal", 8 * 24, 8),
        ({"model": "seedance-lite", "duration": 10, "resolution": "480p"}, "wavespeed", 40, 10),
    ],
)
async def test_a_video_job_is_charged_per_second_and_completes_with_an_mp4(
    any_api: Api, request_fields: dict[str, Any], provider: str, price: int, seconds: int
) -> None:
    """The first provider in catalog order makes it; the stored MP4 lasts the seconds asked."""
    token = await any_api.key(credits=1000)
    status, body = await any_api.post(token, "/v1/jobs", {**VEO, **request_fields})
    assert status == 202, body
    job = await any_api.wait_final(token, body["id"])
    assert job["status"] == "completed", job
    assert job["credits"]["charged"] == price
    assert job["result"]["provider"] == provider
    (video,) = job["result"]["images"]
    assert video["content_type"] == "video/mp4"
    assert video["duration"] == seconds
    facts = parse_mp4(await _download(any_api, video["url"]))
    assert facts.seconds == seconds
    assert (facts.track_width, facts.track_height) == (video["width"], video["height"])
    assert (await _account(any_api, token))["balance"] == 1000 - price


async def test_a_video_job_fails_over_from_fal_to_wavespeed_on_503_and_is_charged_once(
    api: Api, farm: Farm
) -> None:
    """fal answers 503: the job completes on WaveSpeed, one debit, no refund."""
    farm.set_faults("fal", {"error_rates": {"503": 1.0}})
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", VEO)
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "completed", job
    assert job["result"]["provider"] == "wavespeed"
    assert job["result"]["provider_model"] == "google/veo3-fast"
    outcomes = [(a["provider"], a["outcome"], a["status"]) for a in job["attempts"]]
    assert outcomes[0] == ("fal", "error", 503)
    assert outcomes[-1][:2] == ("wavespeed", "ok")
    assert job["credits"] == {"price": 288, "charged": 288, "refunded": 0}
    account = await _account(api, token)
    kinds = [(e["kind"], e["amount"]) for e in account["ledger"] if e["job_id"] == body["id"]]
    assert kinds == [("debit", -288)]
    assert account["balance"] == 1000 - 288


async def test_a_failed_video_job_is_refunded_exactly_once(api: Api, farm: Farm) -> None:
    """Every provider of the model down: failed, one debit and one refund of the same amount."""
    for name in ("fal", "wavespeed"):
        farm.set_faults(name, {"down": True})
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", {**VEO, "model": "seedance-pro"})
    assert status == 202, body
    job = await api.wait_final(token, body["id"])
    assert job["status"] == "failed", job
    assert job["credits"] == {"price": 150, "charged": 150, "refunded": 150}
    account = await _account(api, token)
    kinds = sorted((e["kind"], e["amount"]) for e in account["ledger"] if e["job_id"] == body["id"])
    assert kinds == [("debit", -150), ("refund", 150)]
    assert account["balance"] == 1000


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"duration": 5}, "duration"),
        ({"resolution": "480p"}, "resolution"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio"),
        ({"image_url": "https://example.com/first.png"}, "image_url"),
    ],
)
async def test_a_video_field_the_model_lacks_is_422_and_changes_nothing(
    any_api: Api, fields: dict[str, Any], field: str
) -> None:
    """Refused with the field named, before anything is stored or charged."""
    token = await any_api.key(credits=1000)
    status, body = await any_api.post(token, "/v1/jobs", {**VEO, **fields})
    assert status == 422, body
    assert body["error"]["code"] == "unsupported_by_model"
    assert body["error"]["field"] == field
    await any_api.assert_nothing_stored(token, 1000)


async def test_a_video_field_on_an_image_model_is_422(api: Api) -> None:
    """An image model names the video field it was sent."""
    token = await api.key(credits=1000)
    status, body = await api.post(
        token, "/v1/jobs", {"model": "flux-dev", "prompt": "a pier", "duration": 5}
    )
    assert status == 422, body
    assert body["error"]["field"] == "duration"
    await api.assert_nothing_stored(token, 1000)


async def test_the_seed_shaped_route_accepts_a_video_model(api: Api) -> None:
    """``/api/generate/image`` takes the same body, video included."""
    token = await api.key(credits=1000)
    status, body = await api.post(
        token, "/api/generate/image", {**VEO, "model": "seedance-lite", "resolution": "480p"}
    )
    assert status in (200, 202), body


async def test_a_video_longer_than_its_lease_keeps_it_by_heartbeat(api: Api, farm: Farm) -> None:
    """fal's video takes 5 s, the lease 2 s: the heartbeat keeps it, so the job runs once and
    fal sees one generation."""
    farm.set_faults("fal", {"video_generation_ms": 5000})
    token = await api.key(credits=1000)
    status, body = await api.post(token, "/v1/jobs", VEO)
    assert status == 202, body
    job = await api.wait_final(token, body["id"], timeout_s=30)
    assert job["status"] == "completed", job
    assert job["runs"] == 1
    assert farm.stats()["providers"]["fal"]["generations"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("content_policy", "failed", "content_rejected"), ("429", "completed", None)],
)
async def test_fault_kinds_apply_to_video_as_to_images(
    api: Api, farm: Farm, fault: str, status: str, code: str | None
) -> None:
    """fal's moderation ends a video job without failover (refunded); its 429 fails over."""
    farm.set_faults("fal", {"error_rates": {fault: 1.0}, "retry_after_s": 30})
    token = await api.key(credits=1000)
    _, body = await api.post(token, "/v1/jobs", VEO)
    job = await api.wait_final(token, body["id"])
    assert job["status"] == status, job
    if code is not None:
        assert job["error"]["code"] == code
        assert job["credits"]["refunded"] == 288
        assert farm.stats()["providers"]["wavespeed"]["generations"] == 0
    else:
        assert job["result"]["provider"] == "wavespeed"


async def test_a_remembered_price_never_lets_a_video_field_or_size_through(api: Api) -> None:
    """After plain flux-dev and veo3-fast jobs were priced (and maybe remembered), flux-dev
    with a duration and veo3-fast with an image size are still refused by name."""
    token = await api.key(credits=2000)
    for body in ({"model": "flux-dev", "prompt": "a pier"}, VEO):
        status, answer = await api.post(token, "/v1/jobs", body)
        assert status == 202, answer
    refused = [
        ({"model": "flux-dev", "prompt": "a pier", "duration": 5}, "duration"),
        ({**VEO, "size": "1024x1024"}, "size"),
    ]
    for body, field in refused:
        status, answer = await api.post(token, "/v1/jobs", body)
        assert status == 422, answer
        assert answer["error"]["field"] == field


async def test_an_image_jobs_stored_request_is_as_before_video(api: Api) -> None:
    """An image job's request carries no video fields; a video job's carries them all."""
    token = await api.key(credits=1000)
    _, image = await api.post(token, "/v1/jobs", {"model": "flux-dev", "prompt": "a pier"})
    _, video = await api.post(token, "/v1/jobs", VEO)
    requests = {}
    for name, body in (("image", image), ("video", video)):
        answer = await api.client.get(f"/v1/jobs/{body['id']}", headers=api.auth(token))
        requests[name] = (await answer.json())["request"]
    video_fields = {"duration", "aspect_ratio", "resolution", "generate_audio", "image_url"}
    assert not video_fields & set(requests["image"])
    assert video_fields <= set(requests["video"])


async def test_an_image_job_is_stored_without_video_fields_and_a_video_job_with_all(
    any_api: Api,
) -> None:
    """An image job's request reads as it did before video existed; a video job's carries
    every video field, its defaults filled in, as it was priced."""
    token = await any_api.key(credits=1000)
    _, image = await any_api.post(token, "/v1/jobs", {"model": "flux-dev", "prompt": "a heron"})
    _, video = await any_api.post(token, "/v1/jobs", VEO)
    image_request = (await any_api.wait_final(token, image["id"]))["request"]
    video_request = (await any_api.wait_final(token, video["id"]))["request"]
    fields = {"duration", "aspect_ratio", "resolution", "generate_audio", "image_url"}
    assert fields.isdisjoint(image_request)
    assert fields <= set(video_request)
    assert video_request["duration"] == 8
