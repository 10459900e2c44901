"""The Python client of the imagerouter job API (httpx), sync and async.

::

    from imagerouter.client import Client

    with Client("http://127.0.0.1:8080", api_key="ir_…") as client:
        job = client.submit("a lighthouse at dusk", model="gpt-image-2")
        done = client.wait(job.id)            # SSE, or polling if SSE is unavailable
        png = client.download(done.image_urls[0])

Errors are typed after the API's ``{"error": {"code", "message", "field"}}`` answers (see
:mod:`imagerouter.client.errors`); :func:`verify_webhook` checks a webhook on the receiving
side.

The client needs the ``client`` extra (httpx, httpx-sse): importing this package without it
raises :class:`~imagerouter.errors.MissingExtra` naming
``pip install 'imagerouter-framework[client]'``.
"""

from imagerouter.extras import require

require("client", "imagerouter.client")

# The imports below come after the check on purpose (ruff: E402 ignored for this file).
from imagerouter.client._async import AsyncClient
from imagerouter.client._sync import Client
from imagerouter.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequest,
    ClientError,
    Conflict,
    InsufficientCredits,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimitError,
    ServerError,
    ValidationError,
    WaitTimeout,
)
from imagerouter.client.models import Event, Job, JobPage, ProgressUpdate
from imagerouter.client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "Event",
    "InsufficientCredits",
    "Job",
    "JobPage",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProgressUpdate",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
