"""One watched plugin call: ``generate`` on a fresh event loop in asyncio debug mode, with
blocking calls and log records recorded (:class:`~imagerouter.testing.guards.Watch`), an
optional mid-generation cancellation, and the output's images fetched and sniffed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from imagerouter.clock import MonotonicClock
from imagerouter.generation import ImageRequest, ProviderOutput, output_problem
from imagerouter.provider import CallContext, Provider
from imagerouter.testing.farm_thread import KitFarm
from imagerouter.testing.guards import Watch

__all__ = ["REQUEST", "CallResult", "exception_texts", "run_call", "until_generating"]

#: What a generate call is asked for in every check.
REQUEST = ImageRequest(model="conformance", prompt="a red bicycle", size="1024x1024")
#: Seconds a call may run past its deadline before the kit calls it hung.
HANG_GRACE_S = 5.0
#: Seconds an image URL has to answer, whole, before the round trip calls it unanswered.
IMAGE_FETCH_TIMEOUT_S = 10.0
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")

#: Waits, given the call's task, until the moment to cancel it.
CancelWhen = Callable[["asyncio.Future[Any]"], Awaitable[None]]


@dataclass
class CallResult:
    """What one generate call did, and what was seen while it ran."""

    #: The output, or what generate raised (CancelledError included; TimeoutError if it hung).
    outcome: ProviderOutput | BaseException | None
    blocking: list[str]
    log_texts: list[str]
    image_problems: list[str] = field(default_factory=list)


def run_call(
    provider: Provider,
    model: str,
    *,
    deadline_s: float,
    slow_callback_s: float,
    cancel_when: CancelWhen | None = None,
    fetch_images: bool = False,
    request: ImageRequest | None = None,
) -> CallResult:
    """Run ``provider.generate`` once on a fresh debug-mode loop, watched; never raises.
    ``request`` defaults to :data:`REQUEST`."""
    with Watch() as watch, asyncio.Runner(debug=True) as runner:
        runner.get_loop().slow_callback_duration = slow_callback_s
        outcome, problems = runner.run(
            _generate(provider, model, deadline_s, cancel_when, fetch_images, request or REQUEST)
        )
    return CallResult(outcome, watch.blocking, watch.log_texts, problems)


async def _generate(
    provider: Provider,
    model: str,
    deadline_s: float,
    cancel_when: CancelWhen | None,
    fetch: bool,
    request: ImageRequest,
) -> tuple[ProviderOutput | BaseException | None, list[str]]:
    clock = MonotonicClock()
    async with aiohttp.ClientSession() as session:
        ctx = CallContext(session, model, clock.now() + deadline_s, clock)
        task = asyncio.ensure_future(provider.generate(request, ctx))
        if cancel_when is not None:
            await cancel_when(task)
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=deadline_s + HANG_GRACE_S)
        if not done:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return TimeoutError("generate hung"), []
        try:
            output = task.result()
        except BaseException as exc:  # CancelledError too: it is an outcome here
            return exc, []
        # anything but a ProviderOutput is judged by the check itself, never fetched here
        problems = await _image_problems(session, output) if fetch and _fetchable(output) else []
        return output, problems


async def until_generating(farm: KitFarm, provider: str, task: asyncio.Future[Any]) -> None:
    """Wait until the plugin holds a job at the farm: it has polled its queued job, or (for a
    synchronous API) its generation request is in flight. Gives up after about 5 s."""
    for _ in range(200):
        if task.done():
            return
        counts = (await asyncio.to_thread(farm.stats))["providers"][provider]
        jobs = await asyncio.to_thread(farm.jobs, provider)
        if jobs and counts["requests"] > counts["generations"]:
            return
        if counts["generations"] and not jobs:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.025)


def exception_texts(error: BaseException) -> Iterator[str]:
    """str, repr, args, attributes and the traceback of an error and every error it chains."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield from (repr(value) for value in vars(current).values())
        current = current.__cause__ or current.__context__
    yield "".join(traceback.format_exception(error))


def _fetchable(output: object) -> bool:
    """Whether ``output`` is a ProviderOutput of images the router would take (each a
    GeneratedImage with a URL or bytes): only those are fetched and sniffed."""
    return output_problem(output) is None


async def _image_problems(session: aiohttp.ClientSession, output: ProviderOutput) -> list[str]:
    """Why the output's images are not real images (an empty list when they all are)."""
    problems = []
    for index, image in enumerate(output.images):
        if image.b64_json:
            try:
                data = base64.b64decode(image.b64_json, validate=True)
            except ValueError:
                problems.append(f"image {index}: b64_json is not base64")
                continue
        elif image.url:
            data, problem = await _fetch(session, image.url)
            if problem is not None:
                problems.append(f"image {index}: {problem}")
                continue
        else:
            problems.append(f"image {index} has neither url nor b64_json")
            continue
        if image.content_type.startswith("video/"):
            if data[4:8] != b"ftyp":
                problems.append(f"output {index} is not an MP4 (no ftyp box first)")
        elif not data.startswith(_IMAGE_MAGIC):
            problems.append(f"image {index} is not a PNG, JPEG, GIF or WebP")
    return problems


async def _fetch(session: aiohttp.ClientSession, url: str) -> tuple[bytes, str | None]:
    """``(body, None)`` for a URL answering 200 within :data:`IMAGE_FETCH_TIMEOUT_S`, else
    ``(b"", why not)``: its status, or the error that stopped the answer coming."""
    timeout = aiohttp.ClientTimeout(total=IMAGE_FETCH_TIMEOUT_S)
    try:
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                return b"", f"GET {url} answered {response.status}"
            return await response.read(), None
    except TimeoutError:
        return b"", f"GET {url} got no answer within {IMAGE_FETCH_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return b"", f"GET {url} got no answer: {type(exc).__name__}: {exc}"
