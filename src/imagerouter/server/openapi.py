"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from imagerouter.server.keys import router_key
from imagerouter.server.schemas import ErrorBody, OpenAIErrorBody

if TYPE_CHECKING:  # routes.py imports the views, and a view serves this document
    from imagerouter.server.routes import RouteSpec

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Bad request: not JSON, unknown model, bad cursor or header",
    401: "Missing, malformed, unknown or revoked API key",
    402: "Not enough credits: the body carries the balance and the price",
    404: "No such job for this account",
    409: "Conflict: the job is already final, or the Idempotency-Key is in flight",
    413: "The request body is over the size limit",
    415: "The request body is not sent as JSON (Content-Type: application/json)",
    422: "A field is invalid (the body names it), or the Idempotency-Key was reused",
    429: "Rate limited (Retry-After says when to retry) or, on the OpenAI-compatible routes, "
    "out of credits (insufficient_quota, as OpenAI answers it)",
    503: "Not ready, or no provider could serve the job",
    504: "The job did not finish before its deadline",
}


def _models(routes: Sequence[RouteSpec]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (ErrorBody, "serialization"),
        (OpenAIErrorBody, "serialization"),
    ]
    for spec in routes:
        if spec.body is not None:
            models.append((spec.body, "validation"))
        if spec.ok[1] is not None:
            models.append((spec.ok[1], "serialization"))
    return list(dict.fromkeys(models))


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(
    spec: RouteSpec, refs: dict[tuple[type[BaseModel], JsonSchemaMode], Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": [spec.tag],
    }
    if spec.params:
        operation["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "schema": dict(p.schema),
                **({"description": p.description} if p.description else {}),
            }
            for p in spec.params
        ]
    if spec.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _json(refs[(spec.body, "validation")]),
        }
    status, model = spec.ok
    ok_schema = refs[(model, "serialization")] if model is not None else {"type": "object"}
    ok: dict[str, Any] = {
        "description": _STATUS_TEXT.get(status, "OK"),
        "content": (
            _json(ok_schema)
            if spec.media_type == "application/json"
            else {spec.media_type: {"schema": {"type": "string"}}}
        ),
    }
    if status == 202 and spec.name == "jobs.submit":
        ok["headers"] = {"Location": {"schema": {"type": "string"}}}
    error_ref = refs[(OpenAIErrorBody if spec.openai else ErrorBody, "serialization")]
    statuses = set(spec.errors)
    if spec.body is not None:
        statuses.add(415)
    if spec.auth:
        statuses.add(401)
    if spec.limit is not None:
        statuses.add(429)
    responses: dict[str, Any] = {str(status): ok}
    headers = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in spec.headers
    }
    if headers:
        ok["headers"] = {**ok.get("headers", {}), **headers}
    for code in sorted(statuses):
        # /readyz answers 503 with its own body (which checks failed), not an error body.
        body = ok_schema if spec.name == "health.ready" else error_ref
        responses[str(code)] = {
            "description": _STATUS_TEXT.get(code, "Error"),
            "content": _json(body),
            **({"headers": headers} if headers else {}),
        }
    responses["default"] = {"description": "Unexpected error", "content": _json(error_ref)}
    operation["responses"] = responses
    if spec.auth:
        operation["security"] = [{"bearer": []}]
    return operation


def openapi_document(
    routes: Sequence[RouteSpec], app: web.Application | None = None
) -> dict[str, Any]:
    """The whole document of ``routes`` (the route table); with ``app``, model names are listed
    as examples for ``model``."""
    refs, definitions = models_json_schema(_models(routes), ref_template=_REF)
    schemas = definitions.get("$defs", {})
    if app is not None and router_key in app:
        catalog = app[router_key].catalog
        names = [*catalog.models, *catalog.aliases]
        for name in ("ImageRequest", "OpenAIImageRequest"):
            if name in schemas:
                schemas[name]["properties"]["model"]["examples"] = names
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(spec.doc_path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagerouter job API",
            "version": "1",
            "description": (
                "Submit image jobs (202 + id), poll them, cancel them; OpenAI-compatible "
                "/v1/images/generations. Authenticate with 'Authorization: Bearer <key>'."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
