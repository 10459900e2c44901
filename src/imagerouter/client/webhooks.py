"""Verifying imagerouter's webhooks on the receiving side (Standard Webhooks, ``v1``).

::

    from imagerouter.client import verify_webhook, WebhookVerificationError

    payload = verify_webhook(secret, request.headers, raw_body)   # raises if not genuine

Verify the raw body exactly as received: re-serialized JSON no longer matches the signature.
Dedupe on ``payload`` / ``webhook-id``: delivery is at least once.

This checks ``webhook-signature`` (keyed by the base64-decoded secret, per Standard Webhooks).
The simpler ``x-imagerouter-signature`` needs no library: it is the hex HMAC-SHA256 of the raw
body keyed by the secret string as shown (``hmac.new(secret.encode(), body,
sha256).hexdigest()``), and carries no timestamp, so it does not refuse a replayed capture.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from imagerouter.webhooks.signing import signature_v1

__all__ = ["WebhookVerificationError", "verify_webhook"]


class WebhookVerificationError(ValueError):
    """The webhook is not genuine, or not fresh: the message says which check failed."""


def verify_webhook(
    secret: str | bytes | Sequence[str],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> Any:
    """Check a webhook and return its parsed JSON payload.

    Checks, in order: the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
    headers are present; the timestamp is an integer within ``tolerance_s`` seconds of now
    (neither stale nor from the future: a replayed capture is refused); and one of the ``v1``
    signatures equals HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` under ``secret``, compared
    with :func:`hmac.compare_digest`. ``secret`` may be several secrets (during a rotation).

    Raises:
        WebhookVerificationError: naming the check that failed.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if sent_at < current - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if sent_at > current + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    raw = body.encode() if isinstance(body, str) else body
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    try:
        expected = [signature_v1(s, msg_id, sent_at, raw).encode() for s in secrets]
    except ValueError as exc:
        raise WebhookVerificationError(f"bad secret: {exc}") from None
    offered = [part.encode() for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        raise WebhookVerificationError("no signature matches")
    try:
        return json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
