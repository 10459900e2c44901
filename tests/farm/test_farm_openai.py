"""The OpenAI Images API of the farm: shapes, faults in OpenAI's shape, and the official SDK."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import openai
import pytest

from mockproviders import Farm

from .wire import Wire


async def test_gpt_image_answer_has_openai_shape(wire: Wire) -> None:
    """A GPT image model answers b64_json with usage, size, quality, format and background."""
    response = await wire.openai(
        {"model": "gpt-image-1", "prompt": "a cat", "size": "1536x1024", "quality": "low", "n": 2}
    )
    body = await response.json()
    assert response.status == 200
    assert response.headers["x-request-id"].startswith("req_")
    assert int(response.headers["openai-processing-ms"]) >= 0
    assert len(body["data"]) == 2
    assert all("url" not in item for item in body["data"])
    png = base64.b64decode(body["data"][0]["b64_json"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert body["size"] == "1536x1024"
    assert body["quality"] == "low"
    assert body["output_format"] == "png"
    assert body["background"] == "opaque"
    assert set(body["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}
    assert "x-ratelimit-limit-requests" not in response.headers


async def test_dalle_answers_url_or_b64_with_revised_prompt(
    wire: Wire, session: aiohttp.ClientSession
) -> None:
    """dall-e-3 answers a fetchable url by default, b64_json on request, with revised_prompt."""
    by_url = await (await wire.openai({"model": "dall-e-3", "prompt": "a fox"})).json()
    item = by_url["data"][0]
    assert item["revised_prompt"]
    assert "usage" not in by_url
    image = await session.get(item["url"])
    assert image.status == 200
    assert image.content_type == "image/png"
    by_b64 = await wire.openai(
        {"model": "dall-e-3", "prompt": "a fox", "response_format": "b64_json"}
    )
    item = (await by_b64.json())["data"][0]
    assert "url" not in item
    assert base64.b64decode(item["b64_json"]) == await image.read()


async def test_missing_prompt_is_400_naming_prompt(wire: Wire) -> None:
    """No prompt: 400 invalid_request_error with param "prompt"."""
    response = await wire.openai({"model": "gpt-image-1"})
    error = (await response.json())["error"]
    assert response.status == 400
    assert error["param"] == "prompt"
    assert error["type"] == "invalid_request_error"


async def test_missing_key_is_401_invalid_api_key(wire: Wire) -> None:
    """A request without a bearer key: 401 invalid_api_key."""
    response = await wire.openai(key=None)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("fault", "status", "kind", "code"),
    [
        ("429", 429, "requests", "rate_limit_exceeded"),
        ("500", 500, "server_error", None),
        ("502", 502, "server_error", None),
        ("503", 503, "server_error", None),
        ("401", 401, "invalid_request_error", "invalid_api_key"),
    ],
)
async def test_random_fault_answers_in_openai_shape(
    farm: Farm, wire: Wire, fault: str, status: int, kind: str, code: str | None
) -> None:
    """Each random HTTP fault is OpenAI's {"error": {message, type, param, code}}."""
    farm.set_faults("openai", {"error_rates": {fault: 1.0}})
    response = await wire.openai()
    body = await response.json()
    assert response.status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == (kind, code)
    assert response.headers["x-request-id"]


async def test_random_429_sends_retry_after_and_retry_after_ms(farm: Farm, wire: Wire) -> None:
    """A random 429 carries retry-after (configured seconds) and retry-after-ms."""
    farm.set_faults("openai", {"error_rates": {"429": 1.0}, "retry_after_s": 2})
    response = await wire.openai()
    assert response.status == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "2000"


@pytest.mark.parametrize(
    ("model", "kind", "code"),
    [
        ("gpt-image-1", "image_generation_user_error", "moderation_blocked"),
        ("dall-e-3", "invalid_request_error", "content_policy_violation"),
    ],
)
async def test_content_policy_is_400_per_model_family(
    farm: Farm, wire: Wire, model: str, kind: str, code: str
) -> None:
    """Moderation: 400 moderation_blocked (GPT image) or content_policy_violation (DALL-E)."""
    farm.set_faults("openai", {"error_rates": {"content_policy": 1.0}})
    response = await wire.openai({"model": model, "prompt": "something"})
    error = (await response.json())["error"]
    assert response.status == 400
    assert (error["type"], error["code"]) == (kind, code)


async def test_malformed_is_200_with_truncated_json(farm: Farm, wire: Wire) -> None:
    """malformed: status 200, but the body is cut short and does not parse."""
    farm.set_faults("openai", {"error_rates": {"malformed": 1.0}})
    response = await wire.openai()
    text = await response.text()
    assert response.status == 200
    assert text.startswith('{"created"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_down_answers_503_server_error(farm: Farm, wire: Wire) -> None:
    """down: 503 with OpenAI's server_error body."""
    farm.set_faults("openai", {"down": True})
    response = await wire.openai()
    assert response.status == 503
    assert (await response.json())["error"]["type"] == "server_error"


async def test_timeout_never_answers(farm: Farm, wire: Wire) -> None:
    """timeout: no answer comes; the client gives up, and the farm counts a timeout."""
    farm.set_faults("openai", {"error_rates": {"timeout": 1.0}})
    url = farm.base_url("openai") + "/images/generations"
    with pytest.raises(asyncio.TimeoutError):
        await wire.session.post(
            url,
            json={"prompt": "a cat"},
            headers={"Authorization": "Bearer sk-test"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    assert farm.stats()["providers"]["openai"]["by_status"] == {"timeout": 1}


async def test_reset_breaks_the_connection(farm: Farm, wire: Wire) -> None:
    """reset: the TCP connection is reset with no response, and the farm counts a reset."""
    farm.set_faults("openai", {"error_rates": {"reset": 1.0}})
    with pytest.raises(aiohttp.ClientError):
        await wire.openai()
    assert farm.stats()["providers"]["openai"]["by_status"] == {"reset": 1}


async def test_official_sdk_round_trip(farm: Farm) -> None:
    """AsyncOpenAI with base_url pointed at the farm generates an image unchanged."""
    client = openai.AsyncOpenAI(api_key="sk-sdk", base_url=farm.base_url("openai"))
    async with client:
        result = await client.images.generate(
            model="gpt-image-1", prompt="a lighthouse", size="1024x1536", quality="high"
        )
    assert result.size == "1024x1536"
    assert result.quality == "high"
    assert result.usage is not None
    assert base64.b64decode(result.data[0].b64_json or "").startswith(b"\x89PNG")
    assert farm.stats()["providers"]["openai"]["keys"]["sk-sdk"]["by_status"] == {"200": 1}


async def test_official_sdk_sees_rate_limit_and_moderation(farm: Farm) -> None:
    """The SDK maps the farm's 429 to RateLimitError and moderation to BadRequestError."""
    client = openai.AsyncOpenAI(api_key="sk-sdk", base_url=farm.base_url("openai"), max_retries=0)
    async with client:
        farm.set_faults("openai", {"error_rates": {"429": 1.0}})
        with pytest.raises(openai.RateLimitError) as limited:
            await client.images.generate(model="gpt-image-1", prompt="x")
        assert limited.value.code == "rate_limit_exceeded"
        farm.set_faults("openai", {"error_rates": {"content_policy": 1.0}})
        with pytest.raises(openai.BadRequestError) as rejected:
            await client.images.generate(model="gpt-image-1", prompt="x")
        assert rejected.value.code == "moderation_blocked"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "no-such-model"}, "model", "invalid_value"),
        ({"model": "gpt-image-2", "size": "1000x1000"}, "size", "invalid_value"),  # not ×16
        ({"model": "gpt-image-2", "size": "3840x1024"}, "size", "invalid_value"),  # past 3:1
        ({"model": "gpt-image-2", "size": "3840x3840"}, "size", "invalid_value"),  # past 4K
        ({"model": "gpt-image-1", "size": "512x512"}, "size", "invalid_value"),
        ({"model": "dall-e-3", "size": "1536x1024"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "quality": "hd"}, "quality", "invalid_value"),
        ({"model": "dall-e-3", "quality": "high"}, "quality", "invalid_value"),
        ({"model": "gpt-image-2", "output_format": "bmp"}, "output_format", "invalid_value"),
        (
            {"model": "gpt-image-2", "response_format": "url"},
            "response_format",
            "unknown_parameter",
        ),
    ],
)
async def test_options_the_model_does_not_take_are_400_naming_them(
    wire: Wire, body: dict[str, Any], param: str, code: str
) -> None:
    """As OpenAI refuses them (the research notes' rules), so that a plugin's handling of an
    invalid request can be tried against the farm; nothing is generated."""
    answer = await wire.openai({**body, "prompt": "a fox"})
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert (str(body[param]) if code == "invalid_value" else param) in error["message"]


async def test_gpt_image_2_takes_any_size_within_its_rules(wire: Wire) -> None:
    """Sides multiples of 16, at most 3:1, at most 3840x2160: served, at that size."""
    for size in ("1040x1040", "3840x1280", "3840x2160", "2160x3840"):
        answer = await wire.openai({"model": "gpt-image-2", "prompt": "a fox", "size": size})
        assert answer.status == 200, size
        assert (await answer.json())["size"] == size
