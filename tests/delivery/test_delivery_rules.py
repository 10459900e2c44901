"""The pure rules: retry decisions, Retry-After parsing, and which addresses are refused."""

from __future__ import annotations

import ipaddress
import random
from email.utils import formatdate

import pytest

from imagerouter.resilience.headers import parse_retry_after, retry_after_seconds
from imagerouter.webhooks import (
    RetrySchedule,
    SendResult,
    UrlPolicy,
    UrlRefused,
    decide,
)

SCHEDULE = RetrySchedule((0, 5, 300), jitter=0.2)
NOW = 1_000_000.0


def _decide(result: SendResult, made: int = 1, replay: bool = False):
    return decide(
        result, made=made, replay=replay, schedule=SCHEDULE, rng=random.Random(1), now=NOW
    )


def test_each_answer_maps_to_its_outcome() -> None:
    """2xx succeeds; 410 disables; other 4xx fail; 429, 5xx, 3xx and network errors retry on
    the schedule until it is exhausted; a refused URL or a failed replay is never retried."""
    assert _decide(SendResult(204, 1.0)).outcome == "succeeded"
    assert _decide(SendResult(410, 1.0)).outcome == "disabled"
    assert _decide(SendResult(404, 1.0)).outcome == "failed"
    for result in (SendResult(429, 1.0), SendResult(503, 1.0), SendResult(302, 1.0)):
        retry = _decide(result)
        assert retry.outcome == "retry"
        assert retry.status == "pending"
        assert 4.0 <= retry.next_delay_s <= 6.0
        assert retry.next_attempt_at == NOW + retry.next_delay_s
    assert _decide(SendResult(None, 1.0, "reset")).outcome == "retry"
    assert _decide(SendResult(500, 1.0), made=3).outcome == "failed"  # schedule exhausted
    assert _decide(SendResult(None, None, "refused", refused=True)).outcome == "refused"
    assert _decide(SendResult(500, 1.0), replay=True).outcome == "failed"


def test_retry_after_is_clamped_to_the_scheduled_delay_and_twice_it() -> None:
    """Retry-After below the scheduled delay waits the schedule; above twice it, twice it."""
    short = _decide(SendResult(429, 1.0, retry_after=1.0))
    assert 4.0 <= short.next_delay_s <= 6.0
    long = _decide(SendResult(503, 1.0, retry_after=10_000.0))
    assert 8.0 <= long.next_delay_s <= 12.0
    exact = _decide(SendResult(429, 1.0, retry_after=7.0))
    assert exact.next_delay_s == 7.0
    ignored = _decide(SendResult(500, 1.0, retry_after=7.0))  # only 429 and 503 throttle
    assert ignored.next_delay_s != 7.0


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After is delta seconds or an HTTP date; anything else is ignored."""
    assert retry_after_seconds("120", NOW) == 120.0
    assert retry_after_seconds(formatdate(NOW + 30, usegmt=True), NOW) == pytest.approx(30.0)
    assert retry_after_seconds(formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(junk, NOW) is None
        assert parse_retry_after({"retry-after-ms": junk or "", "retry-after": junk or ""}) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_default_policy_refuses_every_non_public_address(address: str, reason: str | None) -> None:
    """Loopback, private, link-local, metadata, shared and wrapped addresses are refused with
    their reason; public ones pass."""
    why = UrlPolicy().why_refused(ipaddress.ip_address(address))
    assert (why is None) if reason is None else (reason in (why or ""))


def test_allow_list_admits_cidrs_and_names_only() -> None:
    """An allow-list of CIDRs and host names lets exactly those through."""
    policy = UrlPolicy.from_allow(["127.0.0.1/32", "hooks.internal"])
    assert policy.why_refused(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.why_refused(ipaddress.ip_address("127.0.0.2")) is not None
    assert policy.check_syntax("http://hooks.internal:9000/x").port == 9000
    assert policy.filter("example.test", ["127.0.0.1", "10.0.0.1"]) == ["127.0.0.1"]
    for url in ("http://user:pw@example.com/", "javascript:alert(1)", "http:///nohost"):
        with pytest.raises(UrlRefused):
            policy.check_syntax(url)
