"""The lean HTTP/1.1 pool over real loopback sockets: aiohttp servers for ordinary answers,
scripted ones for the odd bytes (chunks split anywhere, 1xx, bodies framed by the close, a
kept-alive connection the server drops, silence)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from imagerouter.transport import BodyTooLarge, HttpPool, ProtocolError, ServerDisconnected
from tests.transport.scripted import ScriptedServer, read_request

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict]]]:
    """An aiohttp server that answers every request with what it received."""
    seen: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        entry = {
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": dict(request.headers),
            "body": (await request.read()).decode(),
            "peer": list(peer) if peer else None,
        }
        seen.append(entry)
        if request.path == "/gzip":
            return web.Response(
                body=gzip.compress(json.dumps(entry).encode()),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        if request.path == "/empty":
            return web.Response(status=204)
        if request.path == "/slow":
            await asyncio.sleep(0.05)
        return web.json_response(entry, status=201, headers={"X-Request-Id": "req_1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_request_arrives_whole_and_its_answer_comes_back(echo) -> None:
    """Method, target with query, Host, our headers and the body reach the server; status,
    case-insensitive headers and body come back."""
    url, seen = echo
    async with HttpPool(user_agent="imagerouter-test") as pool:
        answer = await pool.request(
            "POST",
            f"{url}/fal-ai/flux/requests?logs=1",
            headers={"Authorization": "Key abc", "Content-Type": "application/json"},
            body=b'{"prompt":"a lighthouse"}',
            timeout_s=5,
        )
    assert answer.status == 201
    assert answer.headers["x-request-id"] == "req_1"
    got = json.loads(answer.body)
    assert got["method"] == "POST"
    assert got["path_qs"] == "/fal-ai/flux/requests?logs=1"
    assert got["body"] == '{"prompt":"a lighthouse"}'
    headers = got["headers"]
    assert headers["Host"] == url.removeprefix("http://")
    assert headers["Authorization"] == "Key abc"
    assert headers["Content-Length"] == str(len(got["body"]))
    assert headers["User-Agent"] == "imagerouter-test"
    assert len(seen) == 1


async def test_one_connection_carries_request_after_request(echo) -> None:
    """Sequential requests to one origin reuse one kept-alive connection."""
    url, seen = echo
    async with HttpPool() as pool:
        for number in range(5):
            answer = await pool.request("GET", f"{url}/status/{number}", timeout_s=5)
            assert answer.status == 201
        assert pool.open_connections == 1
    assert len({tuple(entry["peer"]) for entry in seen}) == 1
    assert [entry["path_qs"] for entry in seen] == [f"/status/{n}" for n in range(5)]


async def test_a_gzip_body_is_inflated_and_an_empty_answer_has_no_body(echo) -> None:
    url, _ = echo
    async with HttpPool() as pool:
        zipped = await pool.request("GET", f"{url}/gzip", timeout_s=5)
        assert json.loads(zipped.body)["path_qs"] == "/gzip"
        empty = await pool.request("DELETE", f"{url}/empty", timeout_s=5)
        assert (empty.status, empty.body) == (204, b"")
        head = await pool.request("HEAD", f"{url}/anything", timeout_s=5)
        assert (head.status, head.body) == (201, b"")
        after = await pool.request("GET", f"{url}/after", timeout_s=5)
        assert json.loads(after.body)["path_qs"] == "/after"
        assert pool.open_connections == 1


async def test_the_per_host_cap_holds_and_every_request_is_served(echo) -> None:
    """Six requests at once with ``limit_per_host=2``: two connections, six answers."""
    url, seen = echo
    async with HttpPool(limit_per_host=2) as pool:
        answers = await asyncio.gather(
            *(pool.request("GET", f"{url}/slow?n={n}", timeout_s=5) for n in range(6))
        )
        assert [a.status for a in answers] == [201] * 6
        assert pool.open_connections == 2
    assert len({tuple(entry["peer"]) for entry in seen}) == 2


async def test_chunks_split_anywhere_make_one_body_and_the_connection_goes_on() -> None:
    """A chunked answer written a few bytes at a time (extensions, trailers) reads whole, and
    the same connection then serves the next request."""

    async def script(reader, writer, number) -> None:
        wire = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        for _ in range(2):
            line, _, _ = await read_request(reader)
            server.saw(line)
            for start in range(0, len(wire), 7):
                writer.write(wire[start : start + 7])
                await writer.drain()
                await asyncio.sleep(0.001)

    async with ScriptedServer(script) as server, HttpPool() as pool:
        for _ in range(2):
            answer = await pool.request("GET", f"{server.url}/result", timeout_s=5)
            assert (answer.status, answer.body) == (200, b"hello world")
    assert server.connections == 1
    assert len(server.requests) == 2


async def test_a_body_framed_by_the_close_and_an_interim_answer() -> None:
    """A 100 Continue is skipped; a body with no length ends when the server closes, and that
    connection is not kept."""

    async def script(reader, writer, number) -> None:
        line, _, _ = await read_request(reader)
        server.saw(line)
        writer.write(b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX-A: 1\r\n\r\n{"until')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b'":"close"}')
        await writer.drain()

    async with ScriptedServer(script) as server, HttpPool() as pool:
        answer = await pool.request("POST", f"{server.url}/v1/x", body=b"{}", timeout_s=5)
        assert answer.body == b'{"until":"close"}'
        assert answer.headers["X-A"] == "1"
        await asyncio.sleep(0)
        assert pool.open_connections == 0


async def test_a_silent_server_times_out_and_its_connection_is_not_reused() -> None:
    """No answer: TimeoutError at the deadline, the connection closed; the next request goes
    on a new connection."""

    async def script(reader, writer, number) -> None:
        line, _, _ = await read_request(reader)
        server.saw(line)
        if number == 0:
            await asyncio.sleep(10)
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async with ScriptedServer(script) as server, HttpPool() as pool:
        with pytest.raises(TimeoutError):
            await pool.request("GET", f"{server.url}/status", timeout_s=0.2)
        assert pool.open_connections == 0
        answer = await pool.request("GET", f"{server.url}/status", timeout_s=5)
        assert answer.body == b'{"ok":true}'
    assert server.connections == 2


async def test_each_exchange_on_a_kept_connection_has_its_own_deadline() -> None:
    """A connection keeps one timer across its exchanges (not one an exchange): the timer of
    an exchange that ended early neither closes the idle connection when it fires nor cuts a
    later, longer exchange short; and a shorter deadline after a long one still times out at
    its own deadline, not when the long one's timer would fire."""
    delays = [0.0, 0.0, 0.5, 0.0, 10.0]  # the server's wait before each answer, in turn

    async def script(reader, writer, number) -> None:
        for delay in delays:
            line, _, _ = await read_request(reader)
            server.saw(line)
            await asyncio.sleep(delay)
            writer.write(OK)
            await writer.drain()

    async with ScriptedServer(script) as server, HttpPool() as pool:
        await pool.request("GET", f"{server.url}/a", timeout_s=0.1)
        await asyncio.sleep(0.25)  # its deadline passes while the connection sits idle
        assert pool.open_connections == 1
        await pool.request("GET", f"{server.url}/b", timeout_s=0.3)
        # /b's timer fires 0.3 s on, while /c's answer is still 0.2 s away
        answer = await pool.request("GET", f"{server.url}/c", timeout_s=3600)
        assert answer.body == b'{"ok":true}'
        await pool.request("GET", f"{server.url}/d", timeout_s=3600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30) as guard:
                await pool.request("GET", f"{server.url}/e", timeout_s=0.2)
        assert not guard.expired(), "the 0.2 s deadline waited for the hour-long one's timer"
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_a_cancelled_request_closes_its_connection() -> None:
    async def script(reader, writer, number) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with ScriptedServer(script) as server, HttpPool() as pool:
        task = asyncio.ensure_future(pool.request("GET", f"{server.url}/x", timeout_s=5))
        for _ in range(100):
            if pool.open_connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open_connections == 0


@pytest.mark.parametrize(("method", "sent_again"), [("GET", True), ("POST", False)])
async def test_a_kept_alive_connection_the_server_dropped(method: str, sent_again: bool) -> None:
    """The server reads the second request on a kept-alive connection and closes without a
    byte of answer: a GET goes again on a fresh connection; a POST, which the server may have
    acted on, is never sent twice and fails."""

    async def script(reader, writer, number) -> None:
        line, _, _ = await read_request(reader)
        server.saw(line)
        writer.write(OK)
        await writer.drain()
        if number == 0:
            line, _, _ = await read_request(reader)
            server.saw(line)  # ... and hang up without answering

    async with ScriptedServer(script) as server, HttpPool() as pool:
        await pool.request(method, f"{server.url}/first", body=b"{}", timeout_s=5)
        if sent_again:
            answer = await pool.request(method, f"{server.url}/second", timeout_s=5)
            assert answer.body == b'{"ok":true}'
        else:
            with pytest.raises(ServerDisconnected):
                await pool.request(method, f"{server.url}/second", body=b"{}", timeout_s=5)
    seconds = [line for line in server.requests if "/second" in line]
    assert len(seconds) == (2 if sent_again else 1)


@pytest.mark.parametrize(
    "wire",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
    ],
    ids=["not-http", "bad-header", "bad-chunk", "too-large"],
)
async def test_a_malformed_or_oversized_answer_is_a_protocol_error(wire: bytes) -> None:
    async def script(reader, writer, number) -> None:
        await read_request(reader)
        writer.write(wire)
        await writer.drain()
        await reader.read()

    async with ScriptedServer(script) as server, HttpPool(max_body_bytes=1000) as pool:
        with pytest.raises(ProtocolError):
            await pool.request("GET", f"{server.url}/x", timeout_s=5)
        assert pool.open_connections == 0


async def test_what_cannot_go_on_the_wire_is_refused_before_connecting() -> None:
    """A header value with a line break, a non-http URL, credentials in a URL: ValueError,
    and no connection is made."""

    async def script(reader, writer, number) -> None:
        server.saw((await read_request(reader))[0])

    async with ScriptedServer(script) as server, HttpPool() as pool:
        bad = [
            ("GET", f"{server.url}/x", {"X-Evil": "a\r\nX-Injected: 1"}, "header"),
            ("GET", "ftp://127.0.0.1/x", {}, "http"),
            ("GET", server.url.replace("//", "//user:pw@") + "/x", {}, "credentials"),
            ("GET\r\n", f"{server.url}/x", {}, "method"),
        ]
        for method, url, headers, why in bad:
            with pytest.raises(ValueError, match=why):
                await pool.request(method, url, headers=headers, timeout_s=5)
    assert server.connections == 0
    assert server.requests == []


async def test_a_refused_connection_is_an_os_error_and_frees_its_slot() -> None:
    from tests.helpers.net import free_port

    async with HttpPool(limit=1) as pool:
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                await pool.request("GET", f"http://127.0.0.1:{free_port()}/x", timeout_s=5)
        assert pool.open_connections == 0


async def test_a_truncating_pool_keeps_the_start_of_a_long_body_and_drops_the_connection(
    echo,
) -> None:
    """``truncate_bodies``: a body past ``max_body_bytes`` is cut there, not an error; the
    connection, with the rest of the body still on it, is not reused."""
    url, _ = echo
    async with HttpPool(max_body_bytes=40, truncate_bodies=True) as pool:
        answer = await pool.request("POST", f"{url}/long", body=b"x" * 500, timeout_s=5)
        assert answer.status == 201
        assert len(answer.body) == 40
        assert answer.body.startswith(b'{"method": "POST"')
        await asyncio.sleep(0)
        assert pool.open_connections == 0


class OneAddress:
    """A resolver that answers every name with 127.0.0.1, or refuses with ``error``."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict]:
        self.asked.append(host)
        if self.error is not None:
            raise self.error
        return [{"host": "127.0.0.1", "port": port, "family": socket.AF_INET}]


async def test_a_resolver_chooses_the_address_and_may_refuse_it(echo) -> None:
    """With a resolver, names (and IP literals) are looked up through it: the connection goes
    to the address it gives, the Host header keeps the name; its OSError fails the request
    before any connection."""
    url, seen = echo
    port = url.rsplit(":", 1)[1]
    resolver = OneAddress()
    async with HttpPool(resolver=resolver) as pool:
        answer = await pool.request("GET", f"http://hooks.example:{port}/a", timeout_s=5)
        assert json.loads(answer.body)["headers"]["Host"] == f"hooks.example:{port}"
        await pool.request("GET", f"http://127.0.0.1:{port}/b", timeout_s=5)
    assert resolver.asked == ["hooks.example", "127.0.0.1"]
    refusing = OneAddress(PermissionError("a private address"))
    async with HttpPool(resolver=refusing) as pool:
        with pytest.raises(PermissionError):
            await pool.request("GET", f"http://hooks.example:{port}/c", timeout_s=5)
        assert pool.open_connections == 0
    assert [entry["path_qs"] for entry in seen] == ["/a", "/b"]


async def test_requests_queue_for_a_capped_origin_in_turn_and_time_out_there(echo) -> None:
    """With one connection allowed, five requests take it in turn (each handed the connection
    the one before released); one whose deadline passes while it queues times out without
    holding up the others."""
    url, seen = echo
    async with HttpPool(limit_per_host=1) as pool:
        queued = [pool.request("GET", f"{url}/slow?n={n}", timeout_s=5) for n in range(5)]
        late = pool.request("GET", f"{url}/slow?n=late", timeout_s=0.02)
        answers = await asyncio.gather(*queued, late, return_exceptions=True)
        assert [getattr(a, "status", None) for a in answers[:5]] == [201] * 5
        assert isinstance(answers[5], TimeoutError)
        assert pool.open_connections == 1
        after = await pool.request("GET", f"{url}/after", timeout_s=5)
        assert after.status == 201
    assert len({tuple(entry["peer"]) for entry in seen}) == 1
    assert "/slow?n=late" not in [entry["path_qs"] for entry in seen]


async def test_a_target_with_spaces_or_line_breaks_cannot_split_the_request(echo) -> None:
    """Line breaks in a URL (an answer's status URL, say) are dropped and spaces encoded, on
    the first URL of an origin and on later ones alike: the server sees one request line and
    no header smuggled in."""
    url, seen = echo
    async with HttpPool() as pool:
        for _ in range(2):
            answer = await pool.request(
                "GET", f"{url}/a b\r\nX-Injected: 1\r\n\r\nGET /c?x", timeout_s=5
            )
            assert answer.status == 201
    assert len(seen) == 2
    for entry in seen:
        assert "X-Injected" not in entry["headers"]
        assert entry["path_qs"].startswith("/a%20bX-Injected:%201GET%20/c")


async def test_a_kept_connection_lets_go_of_a_large_answers_memory() -> None:
    """A 2 MB answer (OpenAI's inline base64) read on a kept-alive connection leaves no
    megabyte-sized buffer behind on it: a pool of idle connections stays small."""
    big = b"x" * (2 * 1024 * 1024)

    async def script(reader, writer, number) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        await writer.drain()
        await reader.read()

    async with ScriptedServer(script) as server, HttpPool() as pool:
        answer = await pool.request("GET", f"{server.url}/image", timeout_s=5)
        assert answer.body == big
        [conn] = pool._live  # white box: the one connection, idle in the pool
        assert conn.pooled
        assert conn._buffer.__alloc__() < 64 * 1024
        assert conn._body.__alloc__() < 64 * 1024


async def test_a_lower_limit_for_one_answer_refuses_it_and_the_pool_goes_on(echo) -> None:
    """``max_body_bytes`` on one request: an answer over it is :class:`BodyTooLarge`, with
    its connection closed; the next request (pool limit) on the same pool is answered."""
    url, _ = echo
    async with HttpPool() as pool:
        body = b"x" * 5000
        with pytest.raises(BodyTooLarge) as refused:
            await pool.request("POST", f"{url}/big", timeout_s=5, body=body, max_body_bytes=100)
        assert refused.value.limit == 100
        assert isinstance(refused.value, ProtocolError)
        assert pool.open_connections == 0
        answer = await pool.request("POST", f"{url}/big", timeout_s=5, body=body)
        assert answer.status == 201  # the echo server's answer to a POST
        assert json.loads(answer.body)["body"] == body.decode()
