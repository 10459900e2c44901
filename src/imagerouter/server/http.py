"""Small HTTP helpers the handlers share: reading and validating bodies, writing JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from imagerouter.config import field_path
from imagerouter.jsontext import loads
from imagerouter.server.errors import ApiError, from_validation_error
from imagerouter.server.keys import json_body_key, settings_key

__all__ = [
    "MAX_JSON_DEPTH",
    "dumps",
    "job_id_param",
    "json_response",
    "json_text_response",
    "link",
    "read_json",
    "refuse_unknown_query",
    "validate",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

#: How deep a request body's arrays and objects may nest (the body itself is level 1): far
#: more than any route needs, and little enough that no parser or store recurses too far.
MAX_JSON_DEPTH = 32


#: One encoder for every answer: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Compact JSON."""
    return _ENCODER.encode(value)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response."""
    return json_text_response(dumps(body), status, headers)


def json_text_response(
    text: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response from its text, already written."""
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, the one reader of every route that takes a JSON body: 413
    past the size limit, 400 if it is not JSON or nests deeper than :data:`MAX_JSON_DEPTH`,
    422 naming the field of a string with a NUL character or a lone surrogate, 415
    ``unsupported_media_type`` naming ``Content-Type`` for a body sent as another media type
    than JSON (``application/json`` or any ``application/…+json``; a body whose type is not
    said is read as JSON): a form or a text is the client's mistake, not a body to parse by
    guess. Read once per request: a second call returns the same checked value."""
    if json_body_key in request:
        return request[json_body_key]
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None and content_type != "application/json":
        _check_media_type(request.content_type)
    limit = request.app[settings_key].max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    # Plain ASCII without NUL bytes is UTF-8 (no UTF-16/32 to detect) and, without a \u
    # escape, can hold no NUL character or lone surrogate; with no more brackets than
    # MAX_JSON_DEPTH it cannot nest too deep: then nothing is left for the walk to find.
    plain = raw.isascii() and b"\x00" not in raw and b"\\u" not in raw
    try:
        # pydantic-core's parser where it cannot differ (plain ASCII); json.loads for the rest,
        # and for the parser's refusals, so that an error reads as it always has
        value = loads(raw) if plain else json.loads(raw)
    except RecursionError:
        raise _too_deep(None) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not plain or raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        _check_json(value)
    request[json_body_key] = value
    return value


def _check_media_type(media_type: str) -> None:
    """Refuse a body whose ``Content-Type`` (its media type, parameters stripped and lowered by
    aiohttp) is not JSON's."""
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise ApiError(
        415,
        "unsupported_media_type",
        f"the request body is sent as Content-Type {media_type}; send JSON, "
        "with Content-Type: application/json",
        field="Content-Type",
    )


def _check_json(value: Any) -> None:
    """Refuse what no model or store can take, walking ``value`` without recursion (so any depth
    the parser returned is safe to walk): 400 ``json_too_deep`` naming where it nests past
    :data:`MAX_JSON_DEPTH`; 422 naming the field for a string or key with a NUL character
    (PostgreSQL cannot store one) or a lone surrogate (not encodable as UTF-8)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, loc = stack.pop()
        if isinstance(item, str):
            _check_text(item, loc)
            continue
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(field_path(loc) or None)
        for key, child in children:
            if isinstance(key, str):
                _check_text(key, loc, key=True)
            stack.append((child, depth + 1, (*loc, key)))


def _check_text(text: str, loc: tuple[str | int, ...], *, key: bool = False) -> None:
    if "\x00" in text:
        reason = "must not contain the NUL character (\\u0000)"
    elif text.isascii():
        return
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            reason = "must be valid Unicode (it contains a lone surrogate)"
        else:
            return
    if key:
        shown = text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()
        reason = f'the key "{shown}" {reason}'
    field = field_path(loc) or None
    raise ApiError(
        422,
        "validation_error",
        f"{field or 'the request body'}: {reason}",
        field=field,
        extra={"errors": [{"field": field, "reason": reason}]},
    )


def _too_deep(field: str | None) -> ApiError:
    where = f" (at {field})" if field else ""
    return ApiError(
        400,
        "json_too_deep",
        f"the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels{where}",
        field=field,
        extra={"max_depth": MAX_JSON_DEPTH},
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than {limit} bytes",
        extra={"limit_bytes": limit},
    )


def job_id_param(request: web.Request) -> str:
    """The ``{id}`` path parameter of the job routes. One with a NUL character or a lone
    surrogate names no job (and PostgreSQL cannot even compare it): 404, as any unknown id."""
    job_id = request.match_info["id"]
    try:
        job_id.encode("utf-8")
    except UnicodeEncodeError:
        job_id = job_id.encode("utf-8", "backslashreplace").decode()
    else:
        if "\x00" not in job_id:
            return job_id
    raise ApiError(404, "job_not_found", f"no job {job_id!r}", field="id")


def query_params(request: web.Request) -> dict[str, str]:
    """The query string, one value a name: a name given twice is a 422 naming it, where the
    first value alone would have been taken without a word."""
    query = request.query
    params = dict(query)
    if len(params) != len(query):
        name = next(name for name in params if len(query.getall(name)) > 1)
        raise ApiError(
            422, "validation_error", f"{name}: given more than once; give it once", field=name
        )
    return params


def refuse_unknown_query(request: web.Request, known: Collection[str]) -> None:
    """A 422 naming the first query parameter the route does not read: ignored, a typo
    (``?limt=5``) would change nothing without a word."""
    for name in request.query:
        if name not in known:
            reads = ", ".join(sorted(known)) or "none"
            raise ApiError(
                422,
                "validation_error",
                f"{name}: unknown query parameter (this route reads: {reads})",
                field=name,
                extra={"errors": [{"field": name, "reason": "unknown query parameter"}]},
            )


def validate(model: type[ModelT], data: Any, prefix: str = "") -> ModelT:
    """``data`` validated as ``model``; a 422 naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


def link(request: web.Request, path: str) -> str:
    """``path`` made absolute against ``public_url`` when one is set."""
    base = request.app[settings_key].public_url
    return f"{base.rstrip('/')}{path}" if base else path
