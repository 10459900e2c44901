"""Webhook URLs to metadata, private and loopback addresses are refused and never contacted."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from imagerouter.webhooks import UrlPolicy, WebhookSender, new_secret
from tests.delivery.conftest import Api, ApiFactory, Receiver


class FakeDns(AbstractResolver):
    """A DNS answering every name with one fixed address (a rebinding attacker's server)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


async def test_metadata_and_private_addresses_are_refused(api: Api) -> None:
    """169.254.169.254 and 10.0.0.1 are 422s naming the field, at registration and at submit,
    and a refused submit creates and charges nothing."""
    token = await api.key(credits=100)
    for url, reason in (
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("http://10.0.0.1/hook", "private address"),
        ("http://[::ffff:10.0.0.1]/hook", "private address"),
        ("http://metadata.google.internal/", "cloud metadata endpoint"),
        ("ftp://example.com/", "http:// or https://"),
    ):
        status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
        assert status == 422, body
        assert body["error"]["code"] == "webhook_url_refused"
        assert body["error"]["field"] == "url"
        assert reason in body["error"]["message"]
    await api.call("POST", "/v1/webhook/secret/rotate", token, json={})
    job = {"model": "gpt-image-2", "prompt": "x", "webhook_url": "http://10.0.0.1/hook"}
    status, body = await api.call("POST", "/v1/jobs", token, json=job)
    assert status == 422
    assert body["error"]["field"] == "webhook_url"
    assert "private address" in body["error"]["message"]
    _, jobs = await api.call("GET", "/v1/jobs", token)
    _, account = await api.call("GET", "/v1/account", token)
    assert jobs["data"] == []
    assert account["balance"] == 100


async def test_a_name_resolving_to_loopback_is_refused_and_never_contacted(
    make_api: ApiFactory, receiver: Receiver
) -> None:
    """Without an allow-list, a URL whose host (localhost) resolves to loopback is refused at
    registration and at submit, and the receiver behind it never sees a request."""
    api = await make_api(webhook_allow=[])
    token = await api.key()
    local = receiver.url.replace("127.0.0.1", "localhost")
    for url in (local, receiver.url):
        status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
        assert status == 422, body
        assert "loopback address" in body["error"]["message"]
    await api.call("POST", "/v1/webhook/secret/rotate", token, json={})
    status, body = await api.call(
        "POST",
        "/v1/jobs",
        token,
        json={"model": "gpt-image-2", "prompt": "x", "webhook_url": local},
    )
    assert status == 422
    assert body["error"]["field"] == "webhook_url"
    assert receiver.hits == []


async def test_delivery_checks_resolved_addresses_and_never_follows_redirects(
    receiver: Receiver,
) -> None:
    """At delivery the sender checks the addresses DNS returns (a name rebound to loopback is
    refused without a connection), and a redirect is answered, not followed."""
    port = receiver.url.split(":")[-1].split("/")[0]
    rebound = f"http://rebind.example:{port}/hook"
    secret = [new_secret()]
    async with WebhookSender(UrlPolicy(), resolver=FakeDns("127.0.0.1")) as sender:
        refused = await sender.send(rebound, "msg_1", b"{}", secret)
    assert refused.refused
    assert "loopback address" in (refused.error or "")
    assert receiver.hits == []
    allowed = UrlPolicy.from_allow(["127.0.0.1/32"])
    receiver.script = [(302, {"Location": "/elsewhere"})]
    async with WebhookSender(allowed, resolver=FakeDns("127.0.0.1")) as sender:
        redirected = await sender.send(rebound, "msg_1", b"{}", secret)
        delivered = await sender.send(rebound, "msg_1", b"{}", secret)
    assert redirected.status == 302
    assert not redirected.refused
    assert delivered.status == 204
    assert [hit.path for hit in receiver.hits] == ["/hook", "/hook"]
