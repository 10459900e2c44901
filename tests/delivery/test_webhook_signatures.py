"""Webhooks are signed per Standard Webhooks and with a plain hex HMAC, across rotations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest
from standardwebhooks import Webhook

from imagerouter.client import WebhookVerificationError, verify_webhook
from imagerouter.webhooks import new_secret, secret_key, sign_headers
from tests.delivery.conftest import Api, Receiver


async def _register(api: Api, token: str, url: str) -> str:
    status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
    assert status == 200, body
    assert body["secret"].startswith("whsec_")
    return body["secret"]


async def test_standardwebhooks_library_verifies_our_signature(
    api: Api, receiver: Receiver
) -> None:
    """A receiver using the standardwebhooks package verifies a job.completed webhook whose
    payload carries the job, its downloadable output URLs and the echoed metadata."""
    token = await api.key()
    secret = await _register(api, token, receiver.url)
    verified: list[dict] = []

    def check(hit) -> int | None:
        try:
            verified.append(Webhook(secret).verify(hit.body, hit.headers))
        except Exception:
            return 401
        return None

    receiver.check = check
    job = await api.submit(token, metadata={"order": "A-17"})
    (hit,) = await receiver.wait_hits(1)
    assert hit.headers["webhook-id"].startswith("msg_")
    assert len(verified) == 1
    payload = verified[0]
    assert payload["type"] == "job.completed"
    data = payload["data"]
    assert (data["id"], data["status"], data["metadata"]) == (
        job["id"],
        "completed",
        {"order": "A-17"},
    )
    assert data["error"] is None
    assert data["output_urls"]
    image = await api.client.get(data["output_urls"][0])
    assert image.status == 200
    assert (await image.read()).startswith(b"\x89PNG")
    delivery = await api.wait_delivery(token, job["id"], ("succeeded",))
    assert delivery["id"] == hit.headers["webhook-id"]
    assert delivery["log"][0]["status"] == 204


NODE = "/usr/bin/node"

#: A receiver written the plain way, in Node: the secret string as shown is the HMAC key.
_NODE_RECEIVER = """
const crypto = require('crypto');
const [secret, header] = process.argv.slice(-2);  // the raw body arrives on stdin
const body = require('fs').readFileSync(0);
const expected = Buffer.from(crypto.createHmac('sha256', secret).update(body).digest('hex'));
const ok = header.split(' ').some((given) => {
  const offered = Buffer.from(given);
  return offered.length === expected.length && crypto.timingSafeEqual(offered, expected);
});
process.stdout.write(ok ? 'valid' : 'invalid');
"""


def _plain_python_verifies(secret: str, body: bytes, header: str) -> bool:
    """The five-line Python receiver of the README: no decoding of the secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(given, expected) for given in header.split())


def _plain_node_verifies(secret: str, body: bytes, header: str) -> bool:
    """The same check by /usr/bin/node with ``crypto.createHmac`` and ``timingSafeEqual``."""
    done = subprocess.run(
        [NODE, "-e", _NODE_RECEIVER, secret, header],
        input=body,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout == b"valid"


def _need_node() -> None:
    """Skip without Node, except in CI, where a missing Node is a failure."""
    if not os.path.exists(NODE):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{NODE} is missing: CI must run the Node receiver")
        pytest.skip(f"{NODE} is not installed")


async def test_hex_header_verifies_with_the_plain_recipe(api: Api, receiver: Receiver) -> None:
    """A simple handler checks x-imagerouter-signature, the hex HMAC-SHA256 of the raw body
    keyed by the secret string exactly as shown (``whsec_…`` as UTF-8, not base64-decoded),
    written the plain way in Python and in Node; a tampered body or another secret fails."""
    token = await api.key()
    secret = await _register(api, token, receiver.url)

    def check(hit) -> int | None:
        header = hit.headers["x-imagerouter-signature"]
        return None if _plain_python_verifies(secret, hit.body, header) else 401

    receiver.check = check
    job = await api.submit(token)
    (hit,) = await receiver.wait_hits(1)
    assert json.loads(hit.body)["data"]["id"] == job["id"]
    delivery = await api.wait_delivery(token, job["id"], ("succeeded",))
    assert delivery["attempts"] == 1
    header = hit.headers["x-imagerouter-signature"]
    assert header == hmac.new(secret.encode("utf-8"), hit.body, hashlib.sha256).hexdigest()
    # Not the decoded bytes: that is webhook-signature's key only.
    assert header != hmac.new(secret_key(secret), hit.body, hashlib.sha256).hexdigest()
    tampered = hit.body.replace(job["id"].encode(), b"job_other")
    assert not _plain_python_verifies(secret, tampered, header)
    assert not _plain_python_verifies(new_secret(), hit.body, header)
    _need_node()
    assert _plain_node_verifies(secret, hit.body, header)
    assert not _plain_node_verifies(secret, tampered, header)
    assert not _plain_node_verifies(new_secret(), hit.body, header)


def test_verify_webhook_refuses_tampering_wrong_secrets_and_stale_timestamps() -> None:
    """verify_webhook accepts a genuine webhook and refuses a tampered body, a wrong secret,
    a stale or future timestamp and missing headers, naming the failed check."""
    secret = new_secret()
    body = b'{"type":"job.completed","data":{"id":"job_1"}}'
    now = int(time.time())
    headers = sign_headers([secret], "msg_1", now, body)
    assert verify_webhook(secret, headers, body)["data"]["id"] == "job_1"
    cases = {
        "no signature matches": (secret, headers, body.replace(b"job_1", b"job_2")),
        "no signature matches ": (new_secret(), headers, body),
        "too old": (secret, sign_headers([secret], "msg_1", now - 301, body), body),
        "in the future": (secret, sign_headers([secret], "msg_1", now + 301, body), body),
        "missing": (secret, {"webhook-id": "msg_1"}, body),
    }
    for reason, (key, sent, received) in cases.items():
        with pytest.raises(WebhookVerificationError, match=reason.strip()):
            verify_webhook(key, sent, received)
    stale = sign_headers([secret], "msg_1", now - 3600, body)
    assert verify_webhook(secret, stale, body, tolerance_s=7200)
    # The signature is the Standard Webhooks one: the reference library agrees.
    assert Webhook(secret).verify(body, headers)["data"]["id"] == "job_1"
    signed = f"msg_1.{now}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


async def test_rotation_signs_with_both_secrets_during_grace(api: Api, receiver: Receiver) -> None:
    """After a rotation each webhook carries one signature per active secret, so a receiver
    holding the old or the new secret verifies; the new secret is shown only once."""
    token = await api.key()
    old = await _register(api, token, receiver.url)
    status, rotated = await api.call("POST", "/v1/webhook/secret/rotate", token, json={})
    assert status == 200, rotated
    new = rotated["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert [s["current"] for s in rotated["secrets"]] == [True, False]
    status, shown = await api.call("GET", "/v1/webhook", token)
    assert shown["secret"] is None
    assert len(shown["secrets"]) == 2
    job = await api.submit(token)
    (hit,) = await receiver.wait_hits(1)
    assert len(hit.headers["webhook-signature"].split()) == 2
    assert len(hit.headers["x-imagerouter-signature"].split()) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(hit.body, hit.headers)["data"]["id"] == job["id"]
        assert verify_webhook(secret, hit.headers, hit.body)["data"]["id"] == job["id"]
        header = hit.headers["x-imagerouter-signature"]
        assert _plain_python_verifies(secret, hit.body, header)
    # No body at all is a rotation with the default grace, as README writes the route.
    status, bare = await api.call("POST", "/v1/webhook/secret/rotate", token)
    assert status == 200, bare
    assert bare["secret"] not in (old, new)
    assert [s["current"] for s in bare["secrets"]] == [True, False, False]
    # A rotation with no grace retires the previous secret at once.
    status, again = await api.call("POST", "/v1/webhook/secret/rotate", token, json={"grace_s": 0})
    assert status == 200
    assert [s["current"] for s in again["secrets"]] == [True, False, False]  # both in grace
    # A plain Node receiver holding either secret verifies the delivery made during the grace.
    _need_node()
    for secret in (old, new):
        assert _plain_node_verifies(secret, hit.body, hit.headers["x-imagerouter-signature"])
