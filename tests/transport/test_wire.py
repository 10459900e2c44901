"""The request's bytes: a URL's origin, Host header and target, the same whether or not its
origin was seen before."""

from __future__ import annotations

import pytest

from imagerouter.transport.wire import OriginCache, encode_request, split_url

URLS = [
    "http://127.0.0.1:4000/fal-ai/flux/requests/abc/status?logs=1",
    "http://127.0.0.1:4000/fal-ai/flux/requests/def/status?logs=1#fragment",
    "http://127.0.0.1:4000?q=1",
    "http://127.0.0.1:4000",
    "http://127.0.0.1:4000/a b\r\nX-Injected: 1",
    "http://127.0.0.1:4000/caf\u00e9?x=\u00fc",
    "HTTPS://API.Example.com/v1/images",
    "https://api.example.com:443/v1/images",
    "https://api.example.com:8443/v1/images",
    "http://[::1]:8080/x",
    "http://b\u00fccher.example/x",
]


def test_a_known_origin_splits_as_a_new_one_does() -> None:
    cache = OriginCache()
    for _ in range(2):  # first through the whole parse, then from the cache
        for url in URLS:
            assert cache.split(url) == split_url(url), url


def test_the_host_header_and_target_are_what_the_server_must_see() -> None:
    assert split_url("https://api.example.com:443/v1/images") == (
        ("https", "api.example.com", 443),
        "api.example.com",
        "/v1/images",
    )
    assert split_url("http://[::1]:8080/x?y=1#z") == (("http", "::1", 8080), "[::1]:8080", "/x?y=1")
    assert split_url("http://b\u00fccher.example/")[1] == "xn--bcher-kva.example"
    assert split_url("http://h.example/a b")[2] == "/a%20b"


@pytest.mark.parametrize(
    "url", ["ftp://h.example/x", "http:///x", "h.example/x", "http://u:p@h.example/x"]
)
def test_what_is_not_an_absolute_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        OriginCache().split(url)


def test_the_head_names_the_body_and_defaults_give_way() -> None:
    wire = encode_request(
        "POST", "/v1/x", "h.example", {"user-agent": "mine/1"}, b'{"a":1}', "imagerouter"
    )
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[:2] == ["POST /v1/x HTTP/1.1", "Host: h.example"]
    assert "user-agent: mine/1" in lines
    assert not any(line.startswith("User-Agent: imagerouter") for line in lines)
    assert "Content-Length: 7" in lines
    assert body == b'{"a":1}'
    empty_post = encode_request("POST", "/", "h", None, None, "ua")
    assert b"Content-Length: 0\r\n" in empty_post
    assert b"Content-Length" not in encode_request("GET", "/", "h", None, None, "ua")
