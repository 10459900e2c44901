"""Webhook routes: the account's URL and secrets, each job's delivery log and replay, and the
check of a submitted ``webhook_url``.

* ``PUT /v1/webhook`` registers the URL (checked against the SSRF policy, DNS included) and,
  the first time, creates the signing secret, shown in that answer only;
* ``POST /v1/webhook/secret/rotate`` makes a new secret current (shown once); the old one keeps
  signing for a grace period, so receivers can switch without missing a webhook;
* ``GET /v1/jobs/{id}/deliveries`` is the delivery log: every attempt's time, status, latency
  and error; ``POST …/deliveries/replay`` sends the webhook again with the same ``webhook-id``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from imagerouter.server.errors import ApiError
from imagerouter.server.http import job_id_param, json_response, read_json, validate
from imagerouter.server.keys import (
    deliveries_key,
    principal_key,
    settings_key,
    store_key,
    url_policy_key,
)
from imagerouter.server.present import delivery_out, webhook_out
from imagerouter.server.schemas import RotateSecretIn, WebhookIn
from imagerouter.webhooks import UrlRefused, new_secret, shown_url

__all__ = [
    "check_submitted_webhook",
    "check_webhook_url",
    "delete_webhook",
    "get_webhook",
    "job_deliveries",
    "put_webhook",
    "replay_delivery",
    "rotate_secret",
]


async def check_webhook_url(request: web.Request, url: str, field: str) -> None:
    """422 naming ``field`` if ``url`` may not be contacted (nothing is sent to it)."""
    try:
        await request.app[url_policy_key].validate(url)
    except UrlRefused as exc:
        raise ApiError(
            422,
            "webhook_url_refused",
            f"{field}: {shown_url(url)[:200]!r} {exc}",
            field=field,
            extra={"reason": str(exc)},
        ) from None


async def _view(request: web.Request, new: str | None = None) -> web.Response:
    store = request.app[store_key]
    account_id = request[principal_key].account_id
    endpoint = await store.get_webhook(account_id)
    secrets = await store.webhook_secrets(account_id)
    return json_response(webhook_out(endpoint, secrets, new_secret=new))


async def get_webhook(request: web.Request) -> web.Response:
    """``GET /v1/webhook``: the registered URL, whether it is enabled, the secrets (no values)."""
    return await _view(request)


async def put_webhook(request: web.Request) -> web.Response:
    """``PUT /v1/webhook``: register the URL (re-enabling it after a 410) and whether
    job.progress webhooks go to it too (``progress``, default false); the first secret is
    created and shown once."""
    body = validate(WebhookIn, await read_json(request))
    await check_webhook_url(request, body.url, "url")
    store = request.app[store_key]
    account_id = request[principal_key].account_id
    await store.set_webhook_url(account_id, body.url, progress=body.progress)
    created = None
    if not await store.webhook_secrets(account_id):
        created = new_secret()
        await store.add_webhook_secret(account_id, created, 0.0)
    return await _view(request, created)


async def delete_webhook(request: web.Request) -> web.Response:
    """``DELETE /v1/webhook``: unregister the URL; the secrets stay for per-job URLs."""
    await request.app[store_key].set_webhook_url(request[principal_key].account_id, None)
    return await _view(request)


async def rotate_secret(request: web.Request) -> web.Response:
    """``POST /v1/webhook/secret/rotate``: a new current secret, shown once; the old one signs
    too until the grace period ends. Its one field is optional, so no body at all is ``{}``."""
    body = validate(RotateSecretIn, await read_json(request) if request.body_exists else {})
    grace_s = body.grace_s
    if grace_s is None:
        grace_s = request.app[settings_key].webhook_secret_grace_s
    created = new_secret()
    await request.app[store_key].add_webhook_secret(
        request[principal_key].account_id, created, grace_s
    )
    return await _view(request, created)


async def _job_or_404(request: web.Request):
    job_id = job_id_param(request)
    job = await request.app[store_key].get_job(request[principal_key].account_id, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", field="id")
    return job


async def job_deliveries(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{id}/deliveries``: the job's webhooks and every attempt at each."""
    job = await _job_or_404(request)
    deliveries = await request.app[store_key].job_deliveries(job.account_id, job.id)
    return json_response({"object": "list", "data": [delivery_out(d) for d in deliveries]})


async def replay_delivery(request: web.Request) -> web.Response:
    """``POST /v1/jobs/{id}/deliveries/replay``: send the job's webhook again (same
    ``webhook-id``, same body); 202 with the delivery."""
    job = await _job_or_404(request)
    if not job.final:
        raise ApiError(
            409,
            "job_not_final",
            f"job {job.id!r} is still {job.status}; its webhook is sent when it finishes",
            field="id",
        )
    replay = await request.app[store_key].replay_delivery(job.account_id, job.id)
    if replay is None:
        raise ApiError(
            404,
            "delivery_not_found",
            f"job {job.id!r} has no webhook: it named no webhook_url and its account had no "
            "webhook registered when it finished",
            field="id",
        )
    if replay.state == "in_flight":
        raise ApiError(
            409,
            "delivery_in_flight",
            "an attempt at this webhook is running; see its outcome in the delivery log",
            field="id",
            headers={"Retry-After": "1"},
        )
    if replay.state == "disabled":
        raise ApiError(
            409,
            "webhook_disabled",
            f"{replay.delivery.url} answered 410 Gone and is disabled; register it again "
            "with PUT /v1/webhook to re-enable it",
            field="id",
        )
    worker = request.app.get(deliveries_key)
    if worker is not None:
        worker.wake()
    # the replay answers the delivery's row; its log is read as GET …/deliveries shows it
    logged = await request.app[store_key].job_deliveries(job.account_id, job.id)
    delivery = next((d for d in logged if d.id == replay.delivery.id), replay.delivery)
    return json_response(delivery_out(delivery), 202)


async def check_submitted_webhook(request: web.Request, body: Any) -> None:
    """The check of a submit body's ``webhook_url``, before anything else in it: a URL the
    SSRF policy refuses, or one the account has no secret to sign for, is a 422 naming
    ``webhook_url``, and nothing is created or charged. Other problems with the body are left
    to the submit handler that calls this. A URL that answered ``410 Gone`` is registered
    again by naming it (as ``PUT /v1/webhook`` registers the account's): the client asks for
    it anew."""
    url = body.get("webhook_url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        return
    await check_webhook_url(request, url, "webhook_url")
    account_id = request[principal_key].account_id
    if not await request.app[store_key].webhook_secrets(account_id):
        raise ApiError(
            422,
            "webhook_secret_missing",
            "webhook_url: this account has no webhook signing secret yet; create one "
            "with POST /v1/webhook/secret/rotate or PUT /v1/webhook (it is shown once)",
            field="webhook_url",
        )
    await request.app[store_key].enable_webhook_url(account_id, url)
