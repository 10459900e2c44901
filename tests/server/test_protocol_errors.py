"""Requests aiohttp's HTTP parser refuses (before any middleware) are answered in the API's
JSON error shape with a fitting status, over a real socket, on both stores; the connection is
closed after a parser error, as aiohttp does."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from imagerouter.server.protocol import MAX_FIELD_BYTES, MAX_LINE_BYTES
from tests.helpers.api import Api

READ_TIMEOUT_S = 10.0


async def _exchange(api: Api, raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``raw`` on a fresh connection: status, headers (lower-case), body, and whether the
    server closed the connection after its answer."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(
            reader.readexactly(int(headers["content-length"])), READ_TIMEOUT_S
        )
        closed = await asyncio.wait_for(reader.read(1), READ_TIMEOUT_S) == b""
    finally:
        writer.close()
    return int(status_line.split(" ")[1]), headers, body, closed


def _error(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message", "field"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


PROBES = {
    "authorization header over the limit": (
        b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"a" * (MAX_FIELD_BYTES + 10)
        + b"\r\n\r\n",
        431,
        "header_too_large",
    ),
    "request line over the limit": (
        b"GET /v1/jobs?q=" + b"a" * (MAX_LINE_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "request_line_too_long",
    ),
    "malformed request line": (b"GARBAGE\r\n\r\n", 400, "bad_request_line"),
    "invalid method": (b"G(T /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request_line"),
    # llhttp knows the registered methods only: any other is refused before routing
    "unregistered method": (b"FOO /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request_line"),
    "bad http version": (b"GET /v1/jobs HTTP/1.x\r\nHost: x\r\n\r\n", 400, "bad_request_line"),
    "invalid chunked encoding": (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        400,
        "bad_http_message",
    ),
    "header without a colon": (
        b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        400,
        "bad_http_message",
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
async def test_a_request_the_parser_refuses_is_answered_in_json(
    any_api: Api, probe: str, caplog: pytest.LogCaptureFixture
) -> None:
    """...and logged as what it is, the client's mistake: one INFO line, no traceback, none
    of the request's bytes (the first probe's are an Authorization header)."""
    raw, status, code = PROBES[probe]
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        got, headers, body, closed = await _exchange(any_api, raw)
    error = _error(headers, body)
    assert (got, error["code"]) == (status, code), error
    assert closed, "the connection stays open after a parser error"
    records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.levelno for r in records] == [logging.INFO], [r.getMessage() for r in records]
    assert records[0].exc_info is None
    assert f"{status} " in records[0].getMessage()
    assert "aaaa" not in records[0].getMessage()


#: Request lines the parser refuses whose query carries a token.
LINES_WITH_A_QUERY = {
    "bad http version": b"GET /v1/jobs?token=tk-secret-1 HTTP/9.9x",
    "bad minor version": b"GET /v1/jobs?token=tk-secret-1&a=b HTTP/1.x",
    "invalid method": b"G(T /v1/jobs?token=tk-secret-1 HTTP/1.1",
    "a space in the target": b"GET /v1/a b?token=tk-secret-1 HTTP/1.1",
    "a control character in the query": b"GET /v1/jobs?x=\x01&token=tk-secret-1 HTTP/1.1",
}


@pytest.mark.parametrize("case", list(LINES_WITH_A_QUERY))
async def test_a_refused_request_line_is_not_echoed_with_its_query(api: Api, case: str) -> None:
    """The 400 ``bad_request_line`` still quotes the line, without its query string: a token
    given there is not repeated in the error body."""
    raw = LINES_WITH_A_QUERY[case] + b"\r\nHost: x\r\n\r\n"
    got, headers, body, _ = await _exchange(api, raw)
    error = _error(headers, body)
    assert (got, error["code"]) == (400, "bad_request_line"), error
    assert "tk-secret-1" not in body.decode("latin-1"), error
    assert "token" not in error["message"], error
    assert "/v1/" in error["message"], error  # the path is still shown


async def test_the_parser_limits_leave_a_header_at_the_limit_alone(any_api: Api) -> None:
    """A long but permitted Authorization header reaches the API: 401 for a bad key, JSON."""
    value = "Bearer " + "a" * (MAX_FIELD_BYTES - len("Authorization") - 20)
    raw = f"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {value}\r\n\r\n"
    got, headers, body, _ = await _exchange(any_api, raw.encode())
    assert got == 401
    assert _error(headers, body)["code"]


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "PUT"])
async def test_an_unknown_method_on_a_known_route_is_405_json(any_api: Api, method: str) -> None:
    raw = f"{method} /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    got, headers, body, _ = await _exchange(any_api, raw)
    error = _error(headers, body)
    assert (got, error["code"]) == (405, "method_not_allowed")
    assert "POST" in headers["allow"]


BAD_BODY_ENCODINGS = {
    "gzip that is not gzip": (b"gzip", b"not gzip at all"),
    "deflate over plain JSON": (b"deflate", b'{"model": "gpt-image-2", "prompt": "x"}'),
    "br over plain JSON": (b"br", b'{"model": "gpt-image-2", "prompt": "x"}'),
}


@pytest.mark.parametrize("case", list(BAD_BODY_ENCODINGS))
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/images/generations"])
async def test_a_body_that_does_not_match_its_content_encoding_is_400(
    api: Api, case: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body its ``Content-Encoding`` cannot decode is the client's mistake, found while the
    handler reads it: a 400 ``bad_body_encoding`` naming the body (OpenAI's shape on its
    route), logged in one INFO line, the connection closed, nothing charged; not a 500 with
    a traceback."""
    token = await api.key(account="encoding", credits=100)
    encoding, body = BAD_BODY_ENCODINGS[case]
    raw = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Encoding: "
        + encoding
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with caplog.at_level(logging.INFO):
        got, headers, answer, closed = await _exchange(api, raw)
    assert got == 400, answer
    assert headers["content-type"].startswith("application/json")
    assert closed, "the connection stays open after a body the parser could not read"
    error = json.loads(answer)["error"]
    if path == "/v1/jobs":
        assert (error["code"], error["field"]) == ("bad_body_encoding", "body")
    else:
        assert (error["code"], error["param"]) == ("bad_body_encoding", "body")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ]
    await api.assert_nothing_stored(token, 100)


async def test_a_client_gone_mid_submit_is_no_server_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends part of a submit's body (or headers only) and closes: nothing is
    stored, one INFO line, and /metrics counts it as 499 (client closed), not as a 500 with an
    ERROR traceback that would page someone."""
    token = await api.key(account="gone", credits=100)
    body = json.dumps({"model": "gpt-image-2", "prompt": "x"}).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    server = api.client.server
    with caplog.at_level(logging.INFO):
        for sent in (head + body[:-5], head):
            _, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(sent)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        for _ in range(50):  # bounded: the server notices the closed connections
            if sum("client closed" in r.getMessage() for r in caplog.records) == 2:
                break
            await asyncio.sleep(0.05)
    assert sum("client closed" in r.getMessage() for r in caplog.records) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]
    metrics = await (await api.client.get("/metrics")).text()
    submits = [line for line in metrics.splitlines() if "jobs.submit" in line and "_count" in line]
    assert any('code="499"' in line and line.endswith(" 2.0") for line in submits), submits
    assert not any('code="500"' in line for line in submits), submits
    await api.assert_nothing_stored(token, 100)


#: Headers the parser refuses that carry a credential.
HEADERS_WITH_A_SECRET = {
    "a control character in the value": b"Authorization: Bearer tk-secret-2\x01x",
    "a space before the colon": b"Authorization : Bearer tk-secret-2",
    "no colon": b"Authorization Bearer tk-secret-2",
}


@pytest.mark.parametrize("case", list(HEADERS_WITH_A_SECRET))
async def test_a_refused_header_is_not_echoed_with_its_value(api: Api, case: str) -> None:
    """A 400 for a header the parser refuses does not repeat the header's bytes: they may be
    the client's key."""
    raw = b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n" + HEADERS_WITH_A_SECRET[case] + b"\r\n\r\n"
    got, headers, body, _ = await _exchange(api, raw)
    error = _error(headers, body)
    assert got == 400, error
    assert error["code"] in ("bad_header", "bad_http_message"), error
    assert "tk-secret-2" not in body.decode("latin-1"), error
