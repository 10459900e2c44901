"""Absolute URLs: public_url, else the request's scheme and host; proxy headers believed only
from a trusted peer (IPv4 peers on a dual-stack socket included), and never a host that could
smuggle a path or user info into the URL."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import Mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from imagerouter.server.keys import settings_key
from imagerouter.server.urls import absolute_url, base_url
from tests.helpers.api import api_settings


def request_from(
    peer: str, headers: dict[str, str], tmp_path: Path, **settings: object
) -> web.Request:
    """A request as aiohttp builds it, from ``peer`` to a server listening on 127.0.0.1:8080."""
    app = web.Application()
    app[settings_key] = api_settings(tmp_path, **settings)
    transport = Mock()
    transport.get_extra_info.side_effect = {
        "peername": (peer, 50000),
        "sockname": ("127.0.0.1", 8080),
    }.get
    return make_mocked_request(
        "POST", "/v1/images/generations", headers, app=app, transport=transport
    )


PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "img.example"}


@pytest.mark.parametrize(
    ("peer", "trusted", "headers", "expected"),
    [
        ("10.1.2.3", ["10.0.0.0/8"], PROXY, "https://img.example"),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], PROXY, "https://img.example"),
        ("fd00::1", ["fd00::/8"], PROXY, "https://img.example"),
        ("10.1.2.3", [], PROXY, "http://api.local:8080"),
        ("192.0.2.9", ["10.0.0.0/8"], PROXY, "http://api.local:8080"),
        (
            "10.1.2.3",
            ["10.0.0.0/8"],
            {"Forwarded": 'for=192.0.2.1;proto=https;host="a.example", proto=http;host=b.example'},
            "http://b.example",
        ),
        (
            "10.1.2.3",
            ["10.0.0.0/8"],
            {"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "evil.example/x?"},
            "http://127.0.0.1:8080",
        ),
    ],
)
def test_base_url(
    tmp_path: Path, peer: str, trusted: list[str], headers: dict[str, str], expected: str
) -> None:
    request = request_from(
        peer, {"Host": "api.local:8080", **headers}, tmp_path, trusted_proxies=trusted
    )
    assert base_url(request) == expected


def test_public_url_wins_and_absolute_urls_pass_through(tmp_path: Path) -> None:
    request = request_from(
        "10.1.2.3",
        {"Host": "api.local", **PROXY},
        tmp_path,
        public_url="https://cdn.example/img/",
        trusted_proxies=["10.0.0.0/8"],
    )
    assert absolute_url(request, "/v1/media/a.png") == "https://cdn.example/img/v1/media/a.png"
    assert absolute_url(request, "https://v3.fal.media/x.png") == "https://v3.fal.media/x.png"


def test_a_host_header_that_is_not_a_host_falls_back_to_the_socket(tmp_path: Path) -> None:
    request = request_from("192.0.2.9", {"Host": "user@evil.example"}, tmp_path)
    assert base_url(request) == "http://127.0.0.1:8080"
