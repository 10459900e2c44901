"""Admin routes that manage API keys (the ``admin_key``, as for the dashboard's routes).

* ``DELETE /v1/admin/keys/{key_id}``: revoke a key. It is refused by this process from the next
  request on (the authenticator's cache is bypassed for it); the store tells the other replicas,
  which drop it from their caches at once on PostgreSQL (``NOTIFY``) and within 0.25 s on
  SQLite (:meth:`~imagerouter.jobs.store.AccountStore.subscribe_revocations`), and in any case
  within ``auth_cache_s`` (5 s by default).
"""

from __future__ import annotations

from aiohttp import web

from imagerouter.server.dashboard import require_admin
from imagerouter.server.errors import ApiError
from imagerouter.server.keys import authenticator_key

__all__ = ["revoke_key_view"]


async def revoke_key_view(request: web.Request) -> web.Response:
    """``DELETE /v1/admin/keys/{key_id}``: revoke the key (404 if no active key has that id)."""
    require_admin(request)
    key_id = request.match_info["key_id"]
    if not await request.app[authenticator_key].revoke(key_id):
        raise ApiError(404, "key_not_found", f"no active key {key_id!r}", field="key_id")
    return web.json_response({"id": key_id, "revoked": True})
