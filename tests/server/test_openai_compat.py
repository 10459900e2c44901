"""The OpenAI-compatible route answers per model family as OpenAI does, with absolute URLs and
the job named in a header; checked with the official Python SDK over real HTTP on loopback."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from imagerouter.errors import ConfigError
from imagerouter.server.openai_views import JOB_ID_HEADER
from imagerouter.server.settings import load_server_settings
from mockproviders import Farm
from tests.helpers.api import Api, ApiFactory

PNG = b"\x89PNG\r\n\x1a\n"


def sdk(api: Api, token: str) -> AsyncOpenAI:
    """The official client pointed at the app, with its own retries off."""
    return AsyncOpenAI(base_url=str(api.client.make_url("/v1")), api_key=token, max_retries=0)


async def balance(api: Api, token: str) -> int:
    """The account's credit balance."""
    answer = await api.client.get("/v1/account", headers=api.auth(token))
    return (await answer.json())["balance"]


async def generate(api: Api, token: str, body: dict[str, Any], **headers: str) -> Any:
    """A raw POST to the route: (status, headers, JSON body)."""
    answer = await api.client.post(
        "/v1/images/generations", json=body, headers=api.auth(token, **headers)
    )
    return answer.status, answer.headers, await answer.json()


async def test_gpt_image_answers_b64_json_usage_and_the_job_header(api: Api) -> None:
    """Code written for gpt-image-1 runs unchanged: data[0].b64_json is a PNG, usage and the
    request's size/quality/output_format/background come back, and the job is named."""
    token = await api.key(credits=200)
    async with sdk(api, token) as client:
        raw = await client.images.with_raw_response.generate(
            model="gpt-image-1", prompt="a lighthouse at dusk", size="1536x1024", quality="low"
        )
        answer = raw.parse()
    assert base64.b64decode(answer.data[0].b64_json).startswith(PNG)
    assert answer.data[0].url is None
    assert (answer.size, answer.quality, answer.output_format, answer.background) == (
        "1536x1024",
        "low",
        "png",
        "opaque",
    )
    usage = answer.usage
    assert usage is not None
    assert usage.input_tokens == usage.input_tokens_details.text_tokens > 0
    assert usage.output_tokens == 408  # low quality, 1536x1024: 272 x 1.5
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    job_id = raw.headers[JOB_ID_HEADER]
    job = await (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(token))).json()
    assert job["status"] == "completed"
    assert job["request"]["model"] == "gpt-image-1"


async def test_gpt_image_refuses_response_format_as_openai_does(api: Api) -> None:
    """OpenAI answers 400 unknown_parameter for response_format on GPT image models; nothing
    is charged and no job is made."""
    token = await api.key(credits=200)
    before = await balance(api, token)
    async with sdk(api, token) as client:
        for model in ("gpt-image-2", "gpt-image-1", "gpt-image-1-mini"):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.images.generate(model=model, prompt="x", response_format="b64_json")
            assert (refused.value.code, refused.value.param) == (
                "unknown_parameter",
                "response_format",
            )
            assert refused.value.type == "invalid_request_error"
            assert JOB_ID_HEADER not in refused.value.response.headers
    assert await balance(api, token) == before
    listing = await (await api.client.get("/v1/jobs", headers=api.auth(token))).json()
    assert listing["data"] == []


async def test_a_parameter_openai_does_not_know_is_refused_and_nothing_charged(
    api: Api,
) -> None:
    """A typo (``qualty``) is refused as OpenAI refuses it, naming the parameter: ignored, it
    would have priced the job at the default quality. Parameters OpenAI knows and imagerouter
    does not use are still taken (through the SDK, which sends them as given)."""
    token = await api.key(credits=200)
    before = await balance(api, token)
    body = {"model": "gpt-image-1", "prompt": "x", "qualty": "low"}
    status, headers, answer = await generate(api, token, body)
    assert status == 400
    assert answer["error"]["code"] == "unknown_parameter"
    assert answer["error"]["param"] == "qualty"
    assert answer["error"]["message"] == "Unknown parameter: 'qualty'."
    assert JOB_ID_HEADER not in headers
    assert await balance(api, token) == before
    async with sdk(api, token) as client:
        await client.images.generate(
            model="gpt-image-1", prompt="x", quality="low", moderation="low", user="u-1"
        )
    assert await balance(api, token) < before


async def test_dall_e_3_answers_an_absolute_url_and_revised_prompt(api: Api) -> None:
    """dall-e-3 answers an absolute url by default (fetchable as a PNG), b64_json when asked,
    revised_prompt always, no usage; n above 1 is refused as OpenAI refuses it."""
    token = await api.key(credits=300)
    async with sdk(api, token) as client:
        by_url = await client.images.generate(model="dall-e-3", prompt="a red fox")
        as_b64 = await client.images.generate(
            model="dall-e-3", prompt="a red fox", response_format="b64_json"
        )
        with pytest.raises(openai.BadRequestError) as too_many:
            await client.images.generate(model="dall-e-3", prompt="a red fox", n=2)
    url = by_url.data[0].url
    assert url is not None
    assert url.startswith(str(api.client.make_url("/v1/media/")))
    assert by_url.data[0].b64_json is None
    assert by_url.data[0].revised_prompt == "a red fox"
    assert by_url.usage is None
    fetched = await api.client.session.get(url)
    assert (await fetched.read()).startswith(PNG)
    assert base64.b64decode(as_b64.data[0].b64_json).startswith(PNG)
    assert as_b64.data[0].url is None
    assert (too_many.value.param, too_many.value.code) == ("n", "invalid_value")


async def test_other_models_default_to_b64_json_and_take_url_when_asked(api: Api) -> None:
    """A model that is not OpenAI's (flux-dev) answers like GPT image models by default
    (b64_json, no usage) and honours response_format=url."""
    token = await api.key(credits=200)
    async with sdk(api, token) as client:
        inline = await client.images.generate(model="flux-dev", prompt="a bridge")
        linked = await client.images.generate(
            model="flux-dev", prompt="a bridge", response_format="url"
        )
    assert base64.b64decode(inline.data[0].b64_json).startswith(PNG)
    assert (inline.usage, inline.size, inline.output_format) == (None, "1024x1024", "png")
    assert linked.data[0].url.startswith("http://127.0.0.1:")


async def test_public_url_makes_the_links(make_api: ApiFactory) -> None:
    """With public_url set, the image URL is built from it whatever the Host header says."""
    api = await make_api(public_url="https://images.example.com/base")
    token = await api.key(credits=100)
    status, headers, body = await generate(
        api,
        token,
        {"model": "dall-e-2", "prompt": "a kite"},
        Host="attacker.example",
    )
    assert status == 200
    assert body["data"][0]["url"].startswith("https://images.example.com/base/v1/media/")
    assert headers[JOB_ID_HEADER].startswith("job_")


PROXIED = [
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "img.example"}, "https://img.example/"),
    ({"Forwarded": 'for=1.2.3.4;proto=https;host="cdn.example:8443"'}, "https://cdn.example:8443/"),
    (
        {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example"},
        "https://b.example/",
    ),
]


@pytest.mark.parametrize(("proxy_headers", "expected"), PROXIED)
async def test_forwarded_headers_count_from_a_trusted_proxy(
    make_api: ApiFactory, proxy_headers: dict[str, str], expected: str
) -> None:
    """Behind a trusted proxy its Forwarded / X-Forwarded-* (the nearest value) set the scheme
    and host of the image URL."""
    api = await make_api(trusted_proxies=["127.0.0.0/8"])
    token = await api.key(credits=100)
    _, _, answer = await generate(
        api, token, {"model": "dall-e-2", "prompt": "a kite"}, **proxy_headers
    )
    assert answer["data"][0]["url"].startswith(expected + "v1/media/")


@pytest.mark.parametrize(("proxy_headers", "expected"), PROXIED)
async def test_forwarded_headers_from_an_untrusted_peer_change_nothing(
    make_api: ApiFactory, proxy_headers: dict[str, str], expected: str
) -> None:
    """From a peer outside trusted_proxies the same headers are ignored: the URL names the
    host the request reached."""
    api = await make_api(trusted_proxies=["10.0.0.0/8"])
    token = await api.key(credits=100)
    _, _, answer = await generate(
        api, token, {"model": "dall-e-2", "prompt": "a kite"}, **proxy_headers
    )
    url = answer["data"][0]["url"]
    assert url.startswith(str(api.client.make_url("/v1/media/")))
    assert not url.startswith(expected)


async def test_a_failed_job_still_names_itself(api: Api, farm: Farm) -> None:
    """When every provider is down the SDK sees a 503 that carries the job's id; the job is
    there, failed and refunded."""
    token = await api.key(credits=100)
    for name in ("fal", "wavespeed", "openai"):
        farm.set_faults(name, {"down": True})
    async with sdk(api, token) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.images.generate(model="gpt-image-2", prompt="x")
    job_id = failed.value.response.headers[JOB_ID_HEADER]
    job = await (await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(token))).json()
    assert job["status"] == "failed"
    assert job["credits"]["refunded"] == job["credits"]["price"]


async def test_transparent_background_is_refused_not_faked(api: Api) -> None:
    """No provider is asked for transparency yet, so the route says so instead of answering
    an opaque image as if it were transparent."""
    token = await api.key(credits=100)
    status, headers, body = await generate(
        api, token, {"model": "gpt-image-2", "prompt": "a logo", "background": "transparent"}
    )
    assert status == 400
    assert body["error"]["param"] == "background"
    assert JOB_ID_HEADER not in headers


def test_trusted_proxies_come_from_the_environment_and_are_checked() -> None:
    """A JSON or comma list of CIDRs; anything else stops the start naming the setting."""
    for value in ('["127.0.0.1/32", "::1"]', "127.0.0.1/32,::1"):
        settings = load_server_settings(environ={"IMAGEROUTER_SERVER_TRUSTED_PROXIES": value})
        assert settings.trusted_proxies == ["127.0.0.1/32", "::1"]
    with pytest.raises(ConfigError, match=r"^IMAGEROUTER_SERVER_TRUSTED_PROXIES: 'proxy\.example'"):
        load_server_settings(environ={"IMAGEROUTER_SERVER_TRUSTED_PROXIES": "proxy.example"})


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"model": "gpt-image-1", "quality": "hd"},
            "quality",
            "Invalid value: 'hd'. Supported values are: 'low', 'medium', 'high', and 'auto'.",
        ),
        (
            {"model": "dall-e-3", "quality": "high"},
            "quality",
            "Invalid value: 'high'. Supported values are: 'standard' and 'hd'.",
        ),
        (
            {"model": "dall-e-3", "size": "512x512"},
            "size",
            "Invalid value: '512x512'. Supported values are: "
            "'1024x1024', '1792x1024', and '1024x1792'.",
        ),
        (
            {"model": "dall-e-2", "size": "1536x1024"},
            "size",
            "Invalid value: '1536x1024'. Supported values are: "
            "'256x256', '512x512', and '1024x1024'.",
        ),
    ],
)
async def test_values_openai_refuses_for_the_family_are_refused(
    api: Api, body: dict[str, Any], param: str, message: str
) -> None:
    """quality and DALL·E sizes outside what OpenAI takes for the family: OpenAI's 400
    invalid_value, nothing charged."""
    token = await api.key(credits=100)
    status, headers, answer = await generate(api, token, {"prompt": "x", **body})
    assert status == 400
    assert answer["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_value",
    }
    assert JOB_ID_HEADER not in headers
    assert await balance(api, token) == 100


async def test_dall_e_sizes_and_qualities_openai_takes_are_served(api: Api) -> None:
    """The DALL·E values OpenAI accepts go through (served by the model the name maps to)."""
    token = await api.key(credits=500)
    async with sdk(api, token) as client:
        wide = await client.images.generate(
            model="dall-e-3", prompt="a pier", size="1792x1024", quality="hd"
        )
        small = await client.images.generate(
            model="dall-e-2", prompt="a pier", size="256x256", response_format="b64_json"
        )
    assert wide.data[0].url.startswith("http://127.0.0.1:")
    assert base64.b64decode(small.data[0].b64_json).startswith(PNG)
    assert small.data[0].revised_prompt is None
