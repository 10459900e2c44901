"""The asynchronous client: the same methods as :class:`~imagerouter.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from imagerouter.client._base import Base
from imagerouter.client.errors import APIConnectionError, WaitTimeout, error_from_response
from imagerouter.client.models import Event, Job, JobPage, ProgressUpdate

__all__ = ["AsyncClient", "ProgressHandler"]

#: Called with each progress update while ``wait`` follows a job (may be a coroutine function).
ProgressHandler = Callable[[ProgressUpdate], Awaitable[None] | None]


class AsyncClient(Base):
    """The imagerouter job API, asynchronously (httpx); see :class:`Client` for arguments."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s)
        self._http = http_client or httpx.AsyncClient(timeout=timeout_s, trust_env=False)
        self._owns_http = http_client is None

    async def aclose(self) -> None:
        """Close the HTTP connections (if this client opened them)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = self._headers(kwargs.pop("headers", None))
        try:
            response = await self._http.request(
                method, self.base_url + path, headers=headers, **kwargs
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._json(response)

    # --- jobs ----------------------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        model: str = "gpt-image-2",
        size: str | None = None,
        quality: str | None = None,
        n: int | None = None,
        output_format: str | None = None,
        seed: int | None = None,
        metadata: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        duration: int | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        generate_audio: bool | None = None,
        image_url: str | None = None,
    ) -> Job:
        """Submit a job; returns it ``queued`` (charged). A video model takes ``duration``
        (seconds), ``aspect_ratio``, ``resolution``, ``generate_audio`` and ``image_url`` (the
        first frame); what is left out, the model's defaults fill."""
        body = self._submit_body(
            prompt,
            model,
            {
                "size": size,
                "quality": quality,
                "n": n,
                "output_format": output_format,
                "seed": seed,
                "metadata": metadata,
                "webhook_url": webhook_url,
                "duration": duration,
                "aspect_ratio": aspect_ratio,
                "resolution": resolution,
                "generate_audio": generate_audio,
                "image_url": image_url,
            },
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Job.from_json(await self._request("POST", "/v1/jobs", json=body, headers=headers))

    async def get(self, job_id: str) -> Job:
        """The job, with its result or error."""
        return Job.from_json(await self._request("GET", f"/v1/jobs/{job_id}"))

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (refunded); Conflict if it is already final."""
        return Job.from_json(await self._request("DELETE", f"/v1/jobs/{job_id}"))

    async def list(
        self, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of your jobs, newest first."""
        params = self._list_params(status, limit, cursor)
        return self._page(await self._request("GET", "/v1/jobs", params=params))

    async def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 300.0,
        poll_interval_s: float = 1.0,
        sse: bool = True,
        on_progress: ProgressHandler | None = None,
    ) -> Job:
        """The job once final: followed by SSE, or by polling if SSE is unavailable.

        ``on_progress`` (a function or coroutine function) gets each
        :class:`~imagerouter.client.models.ProgressUpdate` the job's provider reports while it
        waits in the provider's queue (followed by SSE only). Raises WaitTimeout (with the
        last seen job) after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        if sse:
            try:
                async with asyncio.timeout(timeout_s):
                    async for event in self.events(job_id, deadline=deadline):
                        update = event.progress
                        if update is not None and on_progress is not None:
                            answer = on_progress(update)
                            if inspect.isawaitable(answer):
                                await answer
                        if event.final:
                            return await self.get(job_id)
            except (SSEError, APIConnectionError, TimeoutError):
                pass  # fall back to polling (which also notices the deadline)
        while True:
            job = await self.get(job_id)
            if job.final:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(job_id, timeout_s, job)
            await asyncio.sleep(min(poll_interval_s, remaining))

    async def events(
        self,
        job_id: str | None = None,
        *,
        last_event_id: int | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[Event]:
        """Follow events by SSE (one job's, ending after its final event; or all of yours),
        reconnecting with ``Last-Event-ID`` until ``deadline`` (``time.monotonic()``)."""
        path = f"/v1/jobs/{job_id}/events" if job_id else "/v1/events"
        last = last_event_id
        while deadline is None or time.monotonic() < deadline:
            remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
            read = 60.0 if remaining is None else min(60.0, remaining)
            headers = self._headers({"Last-Event-ID": str(last)} if last is not None else None)
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    self.base_url + path,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout_s, read=read),
                ) as source:
                    if source.response.is_error:
                        await source.response.aread()
                        raise error_from_response(source.response)
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            continue
                        event = Event.from_json(json.loads(sse.data))
                        last = event.id
                        yield event
                        if job_id and event.final:
                            return
            except httpx.ReadTimeout:
                continue
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from exc

    # --- webhooks ------------------------------------------------------------------------------

    async def set_webhook(self, url: str, *, progress: bool = False) -> dict[str, Any]:
        """Register your webhook URL (``progress``: job.progress webhooks too); the first
        time, ``secret`` holds the new secret."""
        body = {"url": url, "progress": progress}
        return await self._request("PUT", "/v1/webhook", json=body)

    async def get_webhook(self) -> dict[str, Any]:
        """Your webhook URL and secrets (without values)."""
        return await self._request("GET", "/v1/webhook")

    async def delete_webhook(self) -> dict[str, Any]:
        """Unregister your webhook URL."""
        return await self._request("DELETE", "/v1/webhook")

    async def rotate_webhook_secret(self, grace_s: float | None = None) -> dict[str, Any]:
        """A new signing secret (in ``secret``, shown once); the old one signs during grace."""
        body = {} if grace_s is None else {"grace_s": grace_s}
        return await self._request("POST", "/v1/webhook/secret/rotate", json=body)

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook deliveries, each with its attempt log."""
        return (await self._request("GET", f"/v1/jobs/{job_id}/deliveries"))["data"]

    async def replay_delivery(self, job_id: str) -> dict[str, Any]:
        """Send the job's webhook again (same ``webhook-id``)."""
        return await self._request("POST", f"/v1/jobs/{job_id}/deliveries/replay")

    # --- outputs -------------------------------------------------------------------------------

    async def download_to(self, url: str, path: str | os.PathLike[str]) -> int:
        """Stream a result URL (a video: tens of MB) into the file ``path``, a chunk at a
        time; the bytes written."""
        target = url if "://" in url else self.base_url + url
        size = 0
        try:
            async with self._http.stream("GET", target) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                with open(path, "wb") as file:  # noqa: ASYNC230 - small writes, local disk
                    async for chunk in response.aiter_bytes():
                        file.write(chunk)
                        size += len(chunk)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return size

    async def download(self, url: str) -> bytes:
        """An image's bytes from a result URL (relative URLs are on this server); no API key
        is sent: the URL's signature is its credential."""
        target = url if "://" in url else self.base_url + url
        try:
            response = await self._http.get(target)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response.content
