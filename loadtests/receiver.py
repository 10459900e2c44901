"""The orchestrator's receiver on 127.0.0.1: Locust's start/stop notices, and webhooks.

- ``POST /started``, ``POST /stopped``: the Locust master (or the single Locust process) says
  when its test starts and stops, so the farm timeline runs on Locust's clock.
- ``POST /hooks/{tag}``: a webhook. The receiver keeps the raw body, answers 204 at once, and
  records the arrival time, the ``webhook-id``, the job id and event type from the body, and
  whether the Standard Webhooks signature verifies against the account's secrets.

Signatures are checked with the client SDK's :func:`imagerouter.client.verify_webhook`, as a
customer's receiver would: the Standard Webhooks content ``"{webhook-id}.{webhook-timestamp}.
{body}"``, HMAC-SHA256 under the ``whsec_`` secret, any ``v1`` entry of ``webhook-signature``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from imagerouter import AsyncResource

__all__ = ["Receiver", "WebhookArrival", "job_of", "verify_signature"]


def verify_signature(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> bool:
    """True when the webhook verifies with :func:`imagerouter.client.verify_webhook` (the
    client SDK's Standard Webhooks check: headers present, fresh timestamp, a ``v1`` HMAC of
    ``"{id}.{timestamp}.{body}"`` by one of ``secrets``)."""
    from imagerouter.client import WebhookVerificationError, verify_webhook

    try:
        verify_webhook(list(secrets), headers, body)
    except WebhookVerificationError:
        return False
    return True


def job_of(payload: Any) -> tuple[str | None, str | None]:
    """``(job id, event type)`` from a webhook body, whatever nesting the server chose."""
    if not isinstance(payload, dict):
        return None, None
    kind = payload.get("type") if isinstance(payload.get("type"), str) else None
    for holder in (payload.get("data"), payload):
        if isinstance(holder, dict):
            for name in ("job_id", "id"):
                value = holder.get(name)
                if isinstance(value, str) and value.startswith("job_"):
                    return value, kind
            job = holder.get("job")
            if isinstance(job, dict) and isinstance(job.get("id"), str):
                return job["id"], kind
    return None, kind


@dataclass(slots=True)
class WebhookArrival:
    """One webhook as it arrived."""

    arrived_at: float
    tag: str
    webhook_id: str | None
    timestamp: str | None
    job_id: str | None
    type: str | None
    signature_valid: bool | None
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Receiver(AsyncResource):
    """An aiohttp app on 127.0.0.1 that records notices and webhooks (see the module doc)."""

    secrets: list[str] = field(default_factory=list)
    arrivals: list[WebhookArrival] = field(default_factory=list)
    notices: dict[str, float] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    url: str = ""

    def app(self) -> web.Application:
        """The aiohttp application (also usable with ``aiohttp_client`` in tests)."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/started", self._notice)
        app.router.add_post("/stopped", self._notice)
        app.router.add_post("/hooks/{tag}", self._hook)
        return app

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (a free port by default); then ``url`` is the base URL."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def aclose(self) -> None:
        """Stop listening."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _notice(self, request: web.Request) -> web.Response:
        name = request.path.strip("/")
        self.notices.setdefault(name, time.time())
        (self.started if name == "started" else self.stopped).set()
        return web.Response(status=204)

    async def _hook(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        job_id, kind = job_of(payload)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.arrivals.append(
            WebhookArrival(
                arrived_at=arrived,
                tag=request.match_info["tag"],
                webhook_id=headers.get("webhook-id"),
                timestamp=headers.get("webhook-timestamp"),
                job_id=job_id,
                type=kind,
                signature_valid=verify_signature(self.secrets, headers, body)
                if self.secrets
                else None,
                bytes=len(body),
            )
        )
        return web.Response(status=204)
