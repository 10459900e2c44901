"""The submit path every job-creating route shares: price, idempotency, charge and create.

Order matters: the body is parsed and validated and the model priced *before* anything is
stored, so a rejected request changes nothing. A plain submit with an ``Idempotency-Key``
takes the key, creates and charges the job and records its response in **one** transaction
(so a crash can never strand a held key); the OpenAI-compatible route, which holds its key
while the job runs, takes it first and records the response when the job is done.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web

from imagerouter.auth import Principal
from imagerouter.errors import UnknownModel
from imagerouter.generation import VIDEO_FIELDS, ImageRequest
from imagerouter.jobs.errors import InsufficientCredits
from imagerouter.jobs.ids import new_timed_id
from imagerouter.jobs.types import IdempotencyOutcome, NewJob, StoredResponse
from imagerouter.server.errors import ApiError, api_error
from imagerouter.server.http import json_response, json_text_response
from imagerouter.server.keys import router_key, settings_key, store_key, workers_key
from imagerouter.server.routing_prefs import check_routing

__all__ = [
    "IDEMPOTENCY_HEADER",
    "Answer",
    "HeldKey",
    "begin_idempotent",
    "create_job",
    "fingerprint",
    "idempotency_key",
    "price_of",
    "submit_once",
]

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class Answer(NamedTuple):
    """A submit's answer: what a retry with its ``Idempotency-Key`` gets again, and its JSON
    text when the responder wrote it already (faster than encoding ``stored.body``)."""

    stored: StoredResponse
    text: str | None = None


Responder = Callable[[str, float], Answer]


def fingerprint(route: str, body: Any) -> str:
    """A digest of the route and the parsed body (key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


def price_of(request: web.Request, image_request: ImageRequest) -> int:
    """The request's price; an unknown model is a 400 naming it and listing the known ones,
    routing preferences the catalog cannot meet a 422 naming the field (before any charge)."""
    router = request.app[router_key]
    try:
        price = router.price(image_request)
    except UnknownModel as exc:
        raise api_error(
            exc,
            f"model: unknown model {exc.model!r}; known models: {', '.join(exc.known)}",
            field="model",
            extra={"model": exc.model, "known": exc.known},
        ) from None
    if image_request.routing is not None:
        check_routing(router, image_request, price)
    return price


def idempotency_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key`` (400 if it is empty or too long), or None."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
            field=IDEMPOTENCY_HEADER,
        )
    return key


def _answer_known_key(outcome: IdempotencyOutcome) -> web.Response:
    """A replay of the first response; 422 for another body; 409 while still in flight."""
    if outcome.state == "replay":
        assert outcome.response is not None
        response = outcome.response
        headers = {**response.headers, "Idempotent-Replayed": "true"}
        return json_response(response.body, response.status, headers)
    if outcome.state == "mismatch":
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request (another body, "
            "or the same body on another route)",
            field=IDEMPOTENCY_HEADER,
        )
    raise ApiError(
        409,
        "idempotency_key_in_flight",
        "a request with this Idempotency-Key is still being handled; retry later",
        field=IDEMPOTENCY_HEADER,
        headers={"Retry-After": "1"},
    )


@dataclass(frozen=True, slots=True)
class HeldKey:
    """An ``Idempotency-Key`` this request holds, and the job an earlier holder created."""

    key: str
    job_id: str | None


async def begin_idempotent(
    request: web.Request, principal: Principal, route: str, body: Any, lock_s: float
) -> HeldKey | web.Response | None:
    """Take the request's key for a long request: None without a key, the response to send
    (a replay), or the held key; 422 for another body, 409 while the first is in flight."""
    key = idempotency_key(request)
    if key is None:
        return None
    outcome = await request.app[store_key].idempotency_begin(
        principal.account_id,
        key,
        fingerprint(route, body),
        lock_s,
        request.app[settings_key].idempotency_ttl_s,
    )
    if outcome.state != "new":
        return _answer_known_key(outcome)
    return HeldKey(key, outcome.job_id)


def _new_job(
    app: web.Application,
    principal: Principal,
    image_request: ImageRequest,
    price: int,
    key: str | None,
) -> NewJob:
    router, settings = app[router_key], app[settings_key]
    model = router.resolve(image_request.model)
    if model.video is None:  # stored as before video existed: its video fields are all unset
        deadline_s = settings.job_deadline_s or router.settings.router.deadline_s
        stored = image_request.model_dump(mode="json")
        for name in VIDEO_FIELDS:  # always unset; deleting is 1.5 µs cheaper than exclude=
            del stored[name]
    else:  # stored with every video field filled in, as it was priced
        image_request = model.video.resolve(model.name, image_request)
        deadline_s = settings.video_job_deadline_s or router.settings.router.video_deadline_s
        stored = image_request.model_dump(mode="json")
    created_at = time.time()
    return NewJob(
        id=new_timed_id("job", created_at),
        account_id=principal.account_id,
        request=stored,
        price=price,
        deadline_at=created_at + deadline_s,
        idempotency_key=key,
        created_at=created_at,
    )


def _payment_required(exc: InsufficientCredits) -> ApiError:
    return api_error(
        exc,
        f"the job costs {exc.price} credits but the balance is {exc.balance}",
        extra={"balance": exc.balance, "price": exc.price},
    )


async def submit_once(
    request: web.Request,
    principal: Principal,
    image_request: ImageRequest,
    price: int,
    route: str,
    body: Any,
    respond: Responder,
) -> web.Response:
    """Create and charge the job and answer ``respond(job_id, created_at)``; with an
    ``Idempotency-Key``, all in one transaction with the key (a retry gets the same answer)."""
    app = request.app
    key = idempotency_key(request)
    job = _new_job(app, principal, image_request, price, key)
    assert job.created_at is not None
    answer = respond(job.id, job.created_at)
    response = answer.stored
    store = app[store_key]
    try:
        if key is None:
            await store.submit_job(job)
        else:
            ttl_s = app[settings_key].idempotency_ttl_s
            digest = fingerprint(route, body)
            found = await store.submit_job_once(job, digest, response, ttl_s=ttl_s)
            if isinstance(found, IdempotencyOutcome):
                return _answer_known_key(found)
    except InsufficientCredits as exc:
        raise _payment_required(exc) from None
    app[workers_key].wake()
    if answer.text is not None:
        return json_text_response(answer.text, response.status, response.headers)
    return json_response(response.body, response.status, response.headers)


async def create_job(
    request: web.Request,
    principal: Principal,
    image_request: ImageRequest,
    price: int,
    held: HeldKey | None,
) -> str:
    """Create and charge the job for a request holding ``held`` (recorded on the key);
    a short wallet is a 402 and releases the key, since nothing changed. Returns the job id."""
    job = _new_job(request.app, principal, image_request, price, held.key if held else None)
    store = request.app[store_key]
    try:
        await store.submit_job(job)
    except BaseException as exc:
        if held:
            await store.idempotency_release(principal.account_id, held.key)
        if isinstance(exc, InsufficientCredits):
            raise _payment_required(exc) from None
        raise
    request.app[workers_key].wake()
    return job.id
