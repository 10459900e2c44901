"""Webhook URLs to metadata, private and loopback addresses are refused and never contacted."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from imagerouter.webhooks import UrlPolicy, WebhookSender, new_secret
from imagerouter.webhooks.ssrf import BlockedAddress
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
        # a CR/LF or a space was dropped or quoted by the parser: another path than given
        ("http://example.com/ok\r\nX-Evil: 1", "whitespace or control characters"),
        ("http://example.com/a b", "whitespace or control characters"),
        ("http://example.com/\x7f", "whitespace or control characters"),
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


#: Refused URLs carrying a secret (user info, a query value), the URL the refusal shows, and
#: why it is refused.
SECRET_BEARING = (
    ("http://u:pw-31500@127.0.0.1:31500/h", "http://127.0.0.1:31500/h", "credentials"),
    ("https://:pw-31500@hooks.example/h?x=1", "https://hooks.example/h?x=***", "credentials"),
    ("http://10.0.0.1/h?token=tk-abc", "http://10.0.0.1/h?token=***", "private address"),
    (
        "http://169.254.169.254/latest/?token=tk-abc&a",
        "http://169.254.169.254/latest/?token=***&a",
        "cloud metadata address",
    ),
)


async def test_a_refusal_names_the_url_without_the_secrets_it_carries(api: Api) -> None:
    """The 422 for a refused URL names the field and the URL, without its user info and
    without its query's values, at registration and at submit."""
    token = await api.key(credits=100)
    await api.call("POST", "/v1/webhook/secret/rotate", token, json={})
    for url, shown, reason in SECRET_BEARING:
        job = {"model": "gpt-image-2", "prompt": "x", "webhook_url": url}
        for (status, body), field in (
            (await api.call("PUT", "/v1/webhook", token, json={"url": url}), "url"),
            (await api.call("POST", "/v1/jobs", token, json=job), "webhook_url"),
        ):
            error = body["error"]
            assert (status, error["code"], error["field"]) == (422, "webhook_url_refused", field)
            assert error["message"].startswith(f"{field}: {shown!r} "), error
            assert reason in error["message"], error
            assert "pw-31500" not in str(body), body
            assert "tk-abc" not in str(body), body
    _, jobs = await api.call("GET", "/v1/jobs", token)
    assert jobs["data"] == []


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


#: Every IPv6 form that embeds or translates to an IPv4 address, judged by the IPv4 address it
#: reaches (None: allowed, a public address), beside plain IPv6 for contrast.
IPV6_FORMS = (
    ("64:ff9b::a00:1", "private address"),  # NAT64 well-known prefix → 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "cloud metadata address"),  # NAT64 → 169.254.169.254
    ("64:ff9b::7f00:1", "loopback address"),  # NAT64 → 127.0.0.1
    ("64:ff9b:1:a00:0:100::", "private address"),  # NAT64 local-use /48 → 10.0.0.1
    ("64:ff9b:1:a9fe:a9:fe00::", "cloud metadata address"),  # local-use → 169.254.169.254
    ("::127.0.0.1", "loopback address"),  # IPv4-compatible (deprecated)
    ("::10.0.0.1", "private address"),  # IPv4-compatible
    ("::ffff:10.0.0.1", "private address"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "cloud metadata address"),  # IPv4-mapped
    ("2002:a00:1::", "private address"),  # 6to4 → 10.0.0.1
    ("2002:7f00:1::1", "loopback address"),  # 6to4 → 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private address"),  # Teredo → client 10.0.0.1
    ("2001:db8:1::5efe:a00:1", "address"),  # ISATAP interface id → 10.0.0.1 (doc prefix too)
    ("2606:4700:1::200:5efe:a9fe:a9fe", "cloud metadata address"),  # ISATAP → metadata
    ("64:ff9b::808:808", None),  # NAT64 → 8.8.8.8: public
    ("2002:808:808::1", None),  # 6to4 → 8.8.8.8: public
    # a translating prefix is judged by the host it reaches alone (Python releases disagree on
    # whether 6to4's and NAT64 local-use's prefixes are private)
    ("64:ff9b:1:808:8:800::", None),  # NAT64 local-use → 8.8.8.8: public
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),  # Teredo → client 8.8.8.8: public
    # an ISATAP interface id is reached through its prefix's network: both are judged
    ("fd00::5efe:808:808", "private address"),  # ULA prefix, tunnel end 8.8.8.8
    ("fe80::5efe:808:808", "link-local address"),  # link-local prefix, tunnel end 8.8.8.8
    ("::1", "loopback address"),
    ("fd00::1", "private address"),
    ("2606:4700:4700::1111", None),  # plain public IPv6
)


def test_every_ipv6_form_is_judged_by_the_ipv4_address_it_reaches() -> None:
    """The address filter of delivery (and of registration and submit, below) sees through
    every IPv6 form that embeds or translates to IPv4."""
    policy = UrlPolicy()
    for address, reason in IPV6_FORMS:
        why = policy.why_refused(ipaddress.ip_address(address))
        if reason is None:
            assert why is None, (address, why)
        else:
            assert why is not None, address
            assert reason in why, (address, why)
        if reason is None:
            assert policy.filter("hook.example", [address]) == [address]
        else:
            with pytest.raises(BlockedAddress, match=reason):
                policy.filter("hook.example", [address])


async def test_ipv6_forms_are_refused_at_registration_and_at_submit(api: Api) -> None:
    """The same table at the API's two doors: 422 naming the field, nothing stored or charged."""
    token = await api.key(credits=100)
    _, before = await api.call("GET", "/v1/account", token)
    for address, reason in IPV6_FORMS:
        if reason is None or reason == "loopback address":
            continue  # the test server allows 127.0.0.1/32 (webhook_allow), by what is reached
        url = f"http://[{address}]/hook"
        status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
        assert (status, body["error"]["field"]) == (422, "url"), (address, body)
        job = {"model": "gpt-image-2", "prompt": "x", "webhook_url": url}
        status, body = await api.call("POST", "/v1/jobs", token, json=job)
        assert (status, body["error"]["field"]) == (422, "webhook_url"), (address, body)
        assert reason in body["error"]["message"], (address, body)
    _, jobs = await api.call("GET", "/v1/jobs", token)
    _, after = await api.call("GET", "/v1/account", token)
    assert jobs["data"] == []
    assert after["balance"] == before["balance"]


async def test_the_sender_remembers_only_urls_it_accepted(receiver: Receiver) -> None:
    """The sender checks a URL's form once and remembers it if accepted; a refused URL is
    checked, and refused, at every send, and its receiver never contacted."""
    port = receiver.url.split(":")[-1].split("/")[0]
    allowed = UrlPolicy.from_allow(["127.0.0.1/32"])
    secret = [new_secret()]
    async with WebhookSender(allowed) as sender:
        for _ in range(2):
            refused = await sender.send(f"http://169.254.169.254:{port}/x", "m", b"{}", secret)
            assert refused.refused
            assert "metadata" in (refused.error or "")
            sent = await sender.send(f"http://127.0.0.1:{port}/hook", "m", b"{}", secret)
            assert sent.status == 204
    assert [hit.path for hit in receiver.hits] == ["/hook", "/hook"]
