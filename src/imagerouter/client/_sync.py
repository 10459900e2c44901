"""The synchronous client."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError, connect_sse

from imagerouter.client._base import Base
from imagerouter.client.errors import APIConnectionError, WaitTimeout, error_from_response
from imagerouter.client.models import Event, Job, JobPage, ProgressUpdate

__all__ = ["Client"]


class Client(Base):
    """The imagerouter job API, synchronously (httpx).

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (default
            ``$IMAGEROUTER_BASE_URL``).
        api_key: ``ir_…`` (default ``$IMAGEROUTER_API_KEY``).
        timeout_s: each request's time limit.
        http_client: an httpx client to use instead (its base URL is ignored).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s)
        self._http = http_client or httpx.Client(timeout=timeout_s, trust_env=False)
        self._owns_http = http_client is None

    def close(self) -> None:
        """Close the HTTP connections (if this client opened them)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = self._headers(kwargs.pop("headers", None))
        try:
            response = self._http.request(method, self.base_url + path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._json(response)

    # --- jobs ----------------------------------------------------------------------------------

    def submit(
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
        """Submit a job; returns it ``queued`` (charged). Retrying with the same
        ``idempotency_key`` and arguments returns the same job. A video model takes
        ``duration`` (seconds), ``aspect_ratio``, ``resolution``, ``generate_audio`` and
        ``image_url`` (the first frame); what is left out, the model's defaults fill."""
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
        return Job.from_json(self._request("POST", "/v1/jobs", json=body, headers=headers))

    def get(self, job_id: str) -> Job:
        """The job, with its result or error."""
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (refunded); Conflict if it is already final."""
        return Job.from_json(self._request("DELETE", f"/v1/jobs/{job_id}"))

    def list(
        self, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of your jobs, newest first."""
        params = self._list_params(status, limit, cursor)
        return self._page(self._request("GET", "/v1/jobs", params=params))

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 300.0,
        poll_interval_s: float = 1.0,
        sse: bool = True,
        on_progress: Callable[[ProgressUpdate], None] | None = None,
    ) -> Job:
        """The job once final: followed by SSE, or by polling if SSE is unavailable.

        ``on_progress`` gets each :class:`~imagerouter.client.models.ProgressUpdate` the
        job's provider reports while it waits in the provider's queue (followed by SSE only).
        Raises WaitTimeout (with the last seen job) after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        if sse:
            try:
                for event in self.events(job_id, deadline=deadline):
                    update = event.progress
                    if update is not None and on_progress is not None:
                        on_progress(update)
                    if event.final:
                        return self.get(job_id)
            except (SSEError, APIConnectionError):
                pass  # fall back to polling
        while True:
            job = self.get(job_id)
            if job.final:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(job_id, timeout_s, job)
            time.sleep(min(poll_interval_s, remaining))

    def events(
        self,
        job_id: str | None = None,
        *,
        last_event_id: int | None = None,
        deadline: float | None = None,
    ) -> Iterator[Event]:
        """Follow events by SSE (one job's, ending after its final event; or all of yours),
        reconnecting with ``Last-Event-ID`` until ``deadline`` (``time.monotonic()``)."""
        path = f"/v1/jobs/{job_id}/events" if job_id else "/v1/events"
        last = last_event_id
        while deadline is None or time.monotonic() < deadline:
            remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
            read = 60.0 if remaining is None else min(60.0, remaining)
            headers = self._headers({"Last-Event-ID": str(last)} if last is not None else None)
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    self.base_url + path,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout_s, read=read),
                ) as source:
                    if source.response.is_error:
                        source.response.read()
                        raise error_from_response(source.response)
                    for sse in _until(source, deadline):
                        if not sse.data:
                            continue
                        event = Event.from_json(json.loads(sse.data))
                        last = event.id
                        yield event
                        if job_id and event.final:
                            return
            except httpx.ReadTimeout:
                continue  # idle past the read limit: reconnect and resume
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from exc
        return

    # --- webhooks ------------------------------------------------------------------------------

    def set_webhook(self, url: str, *, progress: bool = False) -> dict[str, Any]:
        """Register your webhook URL (``progress``: job.progress webhooks too); the first
        time, ``secret`` holds the new secret."""
        return self._request("PUT", "/v1/webhook", json={"url": url, "progress": progress})

    def get_webhook(self) -> dict[str, Any]:
        """Your webhook URL and secrets (without values)."""
        return self._request("GET", "/v1/webhook")

    def delete_webhook(self) -> dict[str, Any]:
        """Unregister your webhook URL."""
        return self._request("DELETE", "/v1/webhook")

    def rotate_webhook_secret(self, grace_s: float | None = None) -> dict[str, Any]:
        """A new signing secret (in ``secret``, shown once); the old one signs during grace."""
        body = {} if grace_s is None else {"grace_s": grace_s}
        return self._request("POST", "/v1/webhook/secret/rotate", json=body)

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook deliveries, each with its attempt log."""
        return self._request("GET", f"/v1/jobs/{job_id}/deliveries")["data"]

    def replay_delivery(self, job_id: str) -> dict[str, Any]:
        """Send the job's webhook again (same ``webhook-id``)."""
        return self._request("POST", f"/v1/jobs/{job_id}/deliveries/replay")

    # --- outputs -------------------------------------------------------------------------------

    def download_to(self, url: str, path: str | os.PathLike[str]) -> int:
        """Stream a result URL (a video: tens of MB) into the file ``path``, a chunk at a
        time; the bytes written."""
        target = url if "://" in url else self.base_url + url
        size = 0
        try:
            with self._http.stream("GET", target) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                with open(path, "wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                        size += len(chunk)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return size

    def download(self, url: str) -> bytes:
        """An image's bytes from a result URL (relative URLs are on this server); no API key
        is sent: the URL's signature is its credential."""
        target = url if "://" in url else self.base_url + url
        try:
            response = self._http.get(target)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response.content


_EVENT, _END, _FAILED = "event", "end", "failed"


def _until(source: EventSource, deadline: float | None) -> Iterator[ServerSentEvent]:
    """``source``'s events until ``deadline`` (``time.monotonic()``; None: to the stream's end).

    A read timeout cannot stand for the deadline: every heartbeat or progress event restarts
    it. With a deadline the stream is read by a helper thread, and the caller waits for each
    event no later than the deadline; leaving closes the response (the helper ends with it).
    """
    if deadline is None:
        yield from source.iter_sse()
        return
    arrived: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def read() -> None:
        try:
            for sse in source.iter_sse():
                arrived.put((_EVENT, sse))
        except BaseException as exc:  # handed to the caller, who may have left already
            arrived.put((_FAILED, exc))
        else:
            arrived.put((_END, None))

    threading.Thread(target=read, name="imagerouter-sse", daemon=True).start()
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            kind, item = arrived.get(timeout=remaining)
        except queue.Empty:
            return
        if kind == _END:
            return
        if kind == _FAILED:
            raise item
        yield item
