"""Standard Webhooks signatures, and the plain hex signature for simple handlers.

A secret is ``whsec_`` + base64 of 32 random bytes. The two signatures are keyed differently,
each by its own convention:

* ``webhook-signature`` (Standard Webhooks) is keyed by the base64-decoded bytes, as the spec
  and its reference libraries do;
* ``x-imagerouter-signature`` is keyed by the secret string exactly as shown to the user, the
  whole ``whsec_…`` text as UTF-8 bytes, so that the plain recipe verifies it with no decoding:
  ``hmac.new(secret.encode(), body, sha256).hexdigest()`` in Python,
  ``crypto.createHmac('sha256', secret).update(body).digest('hex')`` in Node.

Each request carries:

* ``webhook-id``: the delivery id, the same on every attempt and replay;
* ``webhook-timestamp``: unix seconds of this attempt;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per
  active secret, space-separated, so that a receiver holding either the old or the new secret
  verifies during a rotation's grace period;
* ``x-imagerouter-signature``: hex HMAC-SHA256 of the raw body alone keyed by the secret
  string, likewise one per active secret, space-separated (a single value outside a rotation).

Only the standard library is used here, so the client package can share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

__all__ = [
    "SECRET_PREFIX",
    "hex_signature",
    "new_secret",
    "secret_key",
    "sign_headers",
    "signature_v1",
]

SECRET_PREFIX = "whsec_"


def new_secret(nbytes: int = 32) -> str:
    """A fresh ``whsec_`` secret of ``nbytes`` random bytes (24 to 64, per the spec)."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a webhook secret holds 24 to 64 random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_`` secret (raw bytes pass through); ValueError if malformed."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def signature_v1(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def hex_signature(secret: str | bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body alone, keyed by the secret string as shown to the user
    (the whole ``whsec_…`` text as UTF-8 bytes, not decoded; raw bytes are the key as given)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the webhook secret is empty")
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign_headers(
    secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every signature header of one attempt, signed with each of ``secrets_`` (newest first)."""
    if not secrets_:
        raise ValueError("no secret to sign the webhook with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature_v1(s, msg_id, timestamp, body) for s in secrets_),
        "x-imagerouter-signature": " ".join(hex_signature(s, body) for s in secrets_),
    }
