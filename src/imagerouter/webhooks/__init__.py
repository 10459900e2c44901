"""Signed webhook delivery: Standard Webhooks signatures, SSRF protection, the retry schedule,
the sender and the delivery worker.

=====================  ==========================================================
module                 owns
=====================  ==========================================================
``signing``            secrets, ``webhook-signature`` and ``x-imagerouter-signature``
``ssrf``               :class:`UrlPolicy` (allow-list) and :class:`GuardedResolver`
``retry``              the schedule, Retry-After, what each answer means
``sender``             :class:`WebhookSender`: one signed POST, no redirects
``targets``            requests at once to one receiver, and its pause
``payload``            the JSON body (``type``, ``timestamp``, ``data``)
``worker``             :class:`DeliveryWorker`: leases due deliveries, records attempts
=====================  ==========================================================
"""

from imagerouter.webhooks.payload import dumps_body, progress_payload, webhook_payload
from imagerouter.webhooks.retry import (
    DEFAULT_SCHEDULE_S,
    Decision,
    NotSent,
    RetrySchedule,
    SendResult,
    clamp_retry_after,
    decide,
)
from imagerouter.webhooks.sender import WebhookSender
from imagerouter.webhooks.signing import (
    SECRET_PREFIX,
    hex_signature,
    new_secret,
    secret_key,
    sign_headers,
    signature_v1,
)
from imagerouter.webhooks.ssrf import (
    BlockedAddress,
    GuardedResolver,
    UrlPolicy,
    UrlRefused,
    shown_url,
)
from imagerouter.webhooks.worker import (
    AttemptObserver,
    BodyBuilder,
    DeliveryConfig,
    DeliveryWorker,
    Superseded,
)

__all__ = [
    "DEFAULT_SCHEDULE_S",
    "SECRET_PREFIX",
    "AttemptObserver",
    "BlockedAddress",
    "BodyBuilder",
    "Decision",
    "DeliveryConfig",
    "DeliveryWorker",
    "GuardedResolver",
    "NotSent",
    "RetrySchedule",
    "SendResult",
    "Superseded",
    "UrlPolicy",
    "UrlRefused",
    "WebhookSender",
    "clamp_retry_after",
    "decide",
    "dumps_body",
    "hex_signature",
    "new_secret",
    "progress_payload",
    "secret_key",
    "shown_url",
    "sign_headers",
    "signature_v1",
    "webhook_payload",
]
