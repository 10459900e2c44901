"""The orchestrator's receiver: Standard Webhooks signatures, notices, arrivals."""

from __future__ import annotations

import json
import time

import pytest

from loadtests.receiver import Receiver, job_of, verify_signature

standardwebhooks = pytest.importorskip("standardwebhooks")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Headers signed by the reference Standard Webhooks library."""
    stamp = int(time.time())
    signature = standardwebhooks.Webhook(secret).sign("msg_1", _dt(stamp), body.decode())
    return {"webhook-id": "msg_1", "webhook-timestamp": str(stamp), "webhook-signature": signature}


def _dt(stamp: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC)


def test_reference_signatures_verify() -> None:
    """What the reference library signs verifies; with a rotated-out secret listed too."""
    body = b'{"type":"job.completed","data":{"id":"job_1"}}'
    assert verify_signature([SECRET], _signed(body), body)
    assert verify_signature([OTHER, SECRET], _signed(body), body)


def test_tampering_fails() -> None:
    """Another body, another secret or a missing header does not verify."""
    body = b'{"type":"job.completed","data":{"id":"job_1"}}'
    headers = _signed(body)
    assert not verify_signature([SECRET], headers, body + b" ")
    assert not verify_signature([OTHER], headers, body)
    assert not verify_signature([SECRET], {**headers, "webhook-id": "msg_2"}, body)
    assert not verify_signature(
        [SECRET], {k: v for k, v in headers.items() if k != "webhook-signature"}, body
    )


def test_job_of_reads_the_envelope() -> None:
    """The job id and type come from the Standard Webhooks envelope."""
    assert job_of({"type": "job.failed", "data": {"object": "job", "id": "job_x"}}) == (
        "job_x",
        "job.failed",
    )
    assert job_of("nonsense") == (None, None)


async def test_the_receiver_records_notices_and_webhooks(aiohttp_client) -> None:
    """Notices set their events; a webhook is answered 204 and recorded, signature checked."""
    receiver = Receiver(secrets=[SECRET])
    client = await aiohttp_client(receiver.app())
    assert (await client.post("/started")).status == 204
    assert receiver.started.is_set()
    assert "started" in receiver.notices
    body = json.dumps({"type": "job.completed", "data": {"id": "job_1"}}).encode()
    answer = await client.post("/hooks/steady", data=body, headers=_signed(body))
    assert answer.status == 204
    (arrival,) = receiver.arrivals
    assert (arrival.job_id, arrival.type, arrival.tag) == ("job_1", "job.completed", "steady")
    assert arrival.signature_valid is True
    await client.post("/hooks/steady", data=body, headers={**_signed(body), "webhook-id": "x"})
    assert receiver.arrivals[-1].signature_valid is False
