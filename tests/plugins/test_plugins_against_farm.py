"""Each built-in plugin against the farm over real HTTP: every fault the farm injects becomes
the right error class, with the right retry_after."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from imagerouter import (
    AuthFailed,
    CallContext,
    ContentRejected,
    ImageRequest,
    MonotonicClock,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from mockproviders import Farm, FarmJobState
from mockproviders.bridge import farm_router

PROVIDERS = {  # plugin → a model id the farm serves for it
    "openai": "gpt-image-2",
    "fal": "openai/gpt-image-2",
    "wavespeed": "openai/gpt-image-2/text-to-image",
}
REQUEST = ImageRequest(model="gpt-image-2", prompt="a red bicycle", size="1536x1024")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(farm: Farm, session: aiohttp.ClientSession, name: str, deadline_s: float = 5.0):
    provider = farm_router(farm).instances[name].provider
    clock = MonotonicClock()
    ctx = CallContext(session, PROVIDERS[name], clock.now() + deadline_s, clock)
    return await provider.generate(REQUEST, ctx), ctx


@pytest.mark.parametrize("name", PROVIDERS)
async def test_generate_round_trip(farm: Farm, session: aiohttp.ClientSession, name: str) -> None:
    """A healthy farm gives back one image of the requested size."""
    output, _ = await call(farm, session, name)
    assert len(output.images) == 1
    image = output.images[0]
    assert image.b64_json or image.url
    if image.url:
        async with session.get(image.url) as response:
            assert response.status == 200
            assert (await response.read()).startswith(b"\x89PNG")


async def test_a_poll_loop_left_early_leaves_nothing_to_close(
    farm: Farm, session: aiohttp.ClientSession
) -> None:
    """fal's queue answers COMPLETED at the first poll and the plugin returns from inside its
    ``async for``: an async generator left that way would be closed later by a task of the
    event loop's; the poll waits are an iterator with nothing to close."""
    hooks = sys.get_asyncgen_hooks()
    started: list[str] = []

    def firstiter(agen) -> None:
        started.append(agen.__qualname__)
        if hooks.firstiter is not None:
            hooks.firstiter(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=hooks.finalizer)
    try:
        output, _ = await call(farm, session, "fal")
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert len(output.images) == 1
    assert [name for name in started if "poll" in name] == []


FAULTS = [
    pytest.param({"error_rates": {"429": 1.0}, "retry_after_s": 2}, RateLimited, 2.0, id="429"),
    pytest.param(
        {"error_rates": {"429": 1.0}, "retry_after_s": 0.25, "retry_after_format": "ms"},
        RateLimited,
        0.25,
        id="429-ms",
    ),
    pytest.param(
        {"error_rates": {"429": 1.0}, "retry_after_s": 3, "retry_after_format": "http-date"},
        RateLimited,
        "date",
        id="429-date",
    ),
    pytest.param(
        {"error_rates": {"429": 1.0}, "retry_after_format": "none"},
        RateLimited,
        None,
        id="429-bare",
    ),
    pytest.param({"error_rates": {"500": 1.0}}, ProviderUnavailable, None, id="500"),
    pytest.param({"error_rates": {"502": 1.0}}, ProviderUnavailable, None, id="502"),
    pytest.param({"error_rates": {"503": 1.0}}, ProviderUnavailable, None, id="503"),
    pytest.param({"down": True}, ProviderUnavailable, None, id="down"),
    pytest.param({"error_rates": {"reset": 1.0}}, ProviderUnavailable, None, id="reset"),
    pytest.param({"error_rates": {"malformed": 1.0}}, ProviderUnavailable, None, id="malformed"),
    pytest.param({"error_rates": {"timeout": 1.0}}, ProviderTimeout, None, id="timeout"),
    pytest.param({"error_rates": {"content_policy": 1.0}}, ContentRejected, None, id="content"),
    pytest.param({"error_rates": {"401": 1.0}}, AuthFailed, None, id="401"),
]


@pytest.mark.parametrize(("faults", "error_class", "retry_after"), FAULTS)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_fault_is_classified(
    farm: Farm,
    session: aiohttp.ClientSession,
    name: str,
    faults: dict,
    error_class: type[ProviderError],
    retry_after: float | str | None,
) -> None:
    """The farm's fault comes back as exactly this error class, with this retry_after."""
    farm.set_faults(name, faults)
    with pytest.raises(ProviderError) as caught:
        await call(farm, session, name, deadline_s=1.0)
    error = caught.value
    assert type(error) is error_class, f"{name}: {faults} gave {error!r}"
    assert error.provider == name
    if retry_after == "date":  # an HTTP-date has whole-second resolution
        assert error.retry_after is not None
        assert 2.0 <= error.retry_after <= 4.0  # 3 s, rounded up to a whole second
    elif retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(retry_after)


async def test_openai_token_bucket_is_read_from_headers(
    farm: Farm, session: aiohttp.ClientSession
) -> None:
    """OpenAI's x-ratelimit-* headers reach the context; the 429 past the bucket says when."""
    farm.set_faults("openai", {"rate_limit": {"rpm": 60, "burst": 1}})
    _, ctx = await call(farm, session, "openai")
    assert ctx.budget is not None
    assert (ctx.budget.limit, ctx.budget.remaining) == (60, 0)
    with pytest.raises(RateLimited) as caught:
        await call(farm, session, "openai")
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 1.0


async def test_fal_cancels_on_deadline(farm: Farm, session: aiohttp.ClientSession) -> None:
    """A fal job still queued at the deadline is a ProviderTimeout, and is cancelled at fal."""
    farm.set_faults("fal", {"generation_ms": {"dist": "fixed", "p50": 5000}})
    with pytest.raises(ProviderTimeout):
        await call(farm, session, "fal", deadline_s=0.3)
    jobs = list(farm.state.jobs["fal"])
    assert [job.state(farm.state.clock.now()) for job in jobs] == [FarmJobState.CANCELED]
