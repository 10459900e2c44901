"""Hypothesis throws generated bodies, query strings, path parameters and headers at every route
of :data:`~imagerouter.server.routes.ROUTES`, over SQLite and over PostgreSQL, and checks what
must hold whatever the request: never a 5xx; every error is JSON in the route's error shape
(ours, or OpenAI's on the OpenAI-compatible route); a refused request (4xx) charges nothing.

Hypothesis runs in a worker thread and hands each request to the app's event loop, so that it
shrinks a failure to the smallest request as usual. Derandomized and bounded: the same requests
on every run, in a few seconds per store.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from yarl import URL

from imagerouter.generation import ImageRequest
from imagerouter.server.keys import store_key
from imagerouter.server.routes import ROUTES, RouteSpec
from imagerouter.server.schemas import OpenAIImageRequest, RotateSecretIn, WebhookIn
from tests.helpers.api import Api

#: Generated requests per route and store.
EXAMPLES_PER_ROUTE = 12
ACCOUNT = "fuzz"

#: A valid body of each body model, the starting point of the mutated ones (the webhook URL is
#: a loopback one, refused without a DNS lookup or a delivery).
VALID_BODIES: dict[type[BaseModel], dict[str, Any]] = {
    ImageRequest: {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "256x256"},
    OpenAIImageRequest: {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "256x256"},
    WebhookIn: {"url": "http://127.0.0.1:9/hook"},
    RotateSecretIn: {"grace_s": 60},
}


def nested(depth: int) -> Any:
    """``depth`` levels of arrays and objects, alternating."""
    value: Any = 0
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfffy",
        "\u202e\u200b\ufeff",
        "\U0001d54f\U0001f5bc",
        "../../etc/passwd",
        "%00%2e%2e",
        "\r\n",
        "a" * 2_000,
        "1024x1024\n",
        "\uff11\uff10\uff12\uff14x1024",
        "null",
        "true",
    ]
)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
ODD_NUMBERS = st.sampled_from(
    [
        -1,
        0,
        2**31,
        2**63,
        -(2**64),
        10**400,
        1e308,
        -0.0,
        0.5,
        math.nan,
        math.inf,
        -math.inf,
    ]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | ANY_TEXT
    | ODD_TEXT
    | ODD_NUMBERS
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT | ODD_TEXT, children, max_size=4)
    ),
    max_leaves=16,
)
BAD_VALUES = (
    JSON_VALUES
    | st.sampled_from(["a" * 40_000, "9" * 5_000])
    | st.integers(min_value=31, max_value=40).map(nested)
    | st.sampled_from([[], {}, [1, 2], {"a": None}])
)


@st.composite
def mutated_bodies(draw: st.DrawFn, model: type[BaseModel]) -> Any:
    """A valid body of ``model`` with a field replaced, removed or added."""
    body = dict(VALID_BODIES[model])
    name = draw(st.sampled_from([*model.model_fields, "unknown", "\x00"]))
    if draw(st.booleans()) and name in body:
        del body[name]
    else:
        body[name] = draw(BAD_VALUES)
    return body


@dataclass
class Probe:
    """One generated request."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None


RAW_BODIES = st.sampled_from(
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"x"',
        b"\xff\xfe{}",
        b'{"prompt": "\xc3\x28"}',
        b'{"a": NaN, "b": Infinity}',
        b'{"metadata": {"x": NaN}, "model": "gpt-image-2", "prompt": "p"}',
        b'{"n": 1e400}',
        b'{"n": ' + b"9" * 5000 + b"}",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a": 1, "a": 2}',
        b"\x00",
    ]
)


def encode(value: Any, surrogates: bool) -> bytes:
    """``value`` as JSON bytes: escaped ASCII, or raw UTF-8 with lone surrogates left in (which
    makes the bytes invalid UTF-8)."""
    if surrogates:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn, spec: RouteSpec) -> bytes | None:
    """Nothing, raw bytes, any JSON value, or (for a route with a body model) a mutated body."""
    choices = ["none", "raw", "json"] + (["model"] * 3 if spec.body in VALID_BODIES else [])
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return None
    if kind == "raw":
        return draw(RAW_BODIES | st.binary(max_size=64))
    value = draw(JSON_VALUES if kind == "json" else mutated_bodies(spec.body))  # type: ignore[arg-type]
    return encode(value, draw(st.booleans()))


PATH_VALUES = (
    ANY_TEXT.filter(bool) | ODD_TEXT.filter(bool) | st.sampled_from(["0", "-1", "job_", "."])
)


@st.composite
def paths(draw: st.DrawFn, spec: RouteSpec, known: dict[str, list[str]]) -> str:
    """The route's path with each parameter a real value or an odd one, percent-encoded."""
    path = spec.path
    for part in path.split("{")[1:]:
        name = part.split("}")[0]
        choices = st.sampled_from(known[name]) | PATH_VALUES if name in known else PATH_VALUES
        value = draw(choices)
        encoded = quote(value.encode("utf-8", "surrogatepass"), safe="")
        path = path.replace("{" + name + "}", encoded)
    return path


@st.composite
def queries(draw: st.DrawFn, spec: RouteSpec, known: dict[str, list[str]]) -> str:
    """A query string: the route's own parameters and unknown ones, with odd values."""
    names = [p.name for p in spec.params if p.location == "query"] + ["x", "limit", "\x00"]
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(names),
                st.sampled_from(known.get("query", ["1"]))
                | ODD_TEXT
                | ANY_TEXT
                | ODD_NUMBERS.map(str),
            ),
            max_size=4,
        )
    )
    return "&".join(
        quote(k.encode("utf-8", "surrogatepass"), safe="")
        + "="
        + quote(v.encode("utf-8", "surrogatepass"), safe="")
        for k, v in pairs
    )


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@st.composite
def header_sets(draw: st.DrawFn, spec: RouteSpec, token: str) -> dict[str, str]:
    """The key, no key or a garbled one; a content type, a wrong one or none; odd extras."""
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["good", "good", "good", "none", "scheme", "garbled", "truncated"]))
    if auth == "good":
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "scheme":
        headers["Authorization"] = f"Basic {token}"
    elif auth == "garbled":
        headers["Authorization"] = draw(HEADER_TEXT)
    elif auth == "truncated":
        headers["Authorization"] = f"Bearer {token[:-3]}"
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                "application/json",
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
            ]
        )
    )
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(HEADER_TEXT)
    if draw(st.booleans()):
        headers["Last-Event-ID"] = draw(HEADER_TEXT | st.sampled_from(["-1", "9" * 30, "1"]))
    return headers


def probes(spec: RouteSpec, token: str, known: dict[str, list[str]]) -> st.SearchStrategy[Probe]:
    """Requests to ``spec``'s route."""
    return st.builds(
        lambda path, query, headers, data: Probe(
            spec.method, f"{path}?{query}" if query else path, headers, data
        ),
        paths(spec, known),
        queries(spec, known),
        header_sets(spec, token),
        bodies(spec),
    )


def explicit(spec: RouteSpec, token: str) -> Probe:
    """The route with the key, its valid body (if any) and every path parameter a NUL: the
    request that found a 500 on PostgreSQL (``GET /v1/jobs/%00``), tried first every run."""
    path = spec.path
    for part in path.split("{")[1:]:
        path = path.replace("{" + part.split("}")[0] + "}", "%00")
    body = VALID_BODIES.get(spec.body) if spec.body else None  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return Probe(spec.method, path, headers, None if body is None else encode(body, False))


def check_error_shape(spec: RouteSpec, body: Any) -> None:
    """The route's error shape: ours, or OpenAI's on an OpenAI-compatible route."""
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    if spec.openai:
        assert {"message", "type", "param", "code"} <= set(error), error
        assert isinstance(error["message"], str), error
        assert isinstance(error["type"], str), error
        assert error["param"] is None or isinstance(error["param"], str), error
        assert error["code"] is None or isinstance(error["code"], str), error
    else:
        assert isinstance(error["code"], str), error
        assert isinstance(error["message"], str), error
        assert "field" in error, error
        assert error["field"] is None or isinstance(error["field"], str), error


async def test_no_generated_request_gets_a_5xx_or_is_charged_when_refused(any_api: Api) -> None:
    """Every route, generated requests: never a 5xx; every error in the route's shape; nothing
    charged (balance and ledger unchanged but for refunds of earlier jobs) for any 4xx."""
    api = any_api
    token = await api.key(ACCOUNT, credits=10**9)
    store = api.app[store_key]
    account = await store.find_account(ACCOUNT)
    assert account is not None
    answer = await api.client.post(
        "/v1/jobs", json=VALID_BODIES[ImageRequest], headers=api.auth(token)
    )
    job_id = (await answer.json())["id"]
    job = await api.wait_final(token, job_id)
    media = URL(job["result"]["images"][0]["url"])
    job_part, file_part = media.path.split("/")[-2:]
    known = {
        "id": [job_id],
        "job": [job_part],
        "file": [file_part],
        "query": [media.query.get("expires", "1"), media.query.get("sig", "x"), "queued"],
    }
    loop = asyncio.get_running_loop()

    async def send(spec: RouteSpec, probe: Probe) -> None:
        before = await store.ledger(account.id, limit=1)
        balance = (await store.get_account(account.id)).balance
        response = await api.client.request(
            probe.method,
            URL(probe.url, encoded=True),
            headers=probe.headers,
            data=probe.data,
            allow_redirects=False,
        )
        async with response:
            text = await response.text(errors="replace")
        what = f"{probe.method} {probe.url} {probe.headers} {probe.data!r:.300}"
        assert response.status < 500, f"{response.status} for {what}: {text:.500}"
        if response.status < 400:
            return
        assert response.content_type == "application/json", f"{what}: {text:.300}"
        check_error_shape(spec, json.loads(text))
        newer = [
            e for e in await store.ledger(account.id, limit=50) if not before or e.id > before[0].id
        ]
        refunded = {e.job_id for e in newer if e.kind == "refund"}
        charged = [e for e in newer if e.kind == "debit" and e.job_id not in refunded]
        assert not charged, f"{response.status} charged {charged} for {what}"
        now = (await store.get_account(account.id)).balance
        assert now - balance == sum(e.amount for e in newer), f"balance moved for {what}"

    def fuzz(spec: RouteSpec) -> None:
        """Hypothesis's run over ``spec``'s route (in a worker thread)."""

        @example(explicit(spec, token))
        @given(probe=probes(spec, token, known))
        @settings(
            max_examples=EXAMPLES_PER_ROUTE,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        def check(probe: Probe) -> None:
            asyncio.run_coroutine_threadsafe(send(spec, probe), loop).result(timeout=60)

        check()

    for spec in ROUTES:
        await asyncio.to_thread(fuzz, spec)
