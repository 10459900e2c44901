"""``GET /v1/media/{key}``: images kept by the local storage backend, under signed URLs.

No API key is needed: the URL's ``expires`` and ``sig`` are the credential (see
:mod:`imagerouter.storage.local`). A wrong or expired signature is a 403 that says which; a
valid one for a file that is gone is a 404.
"""

from __future__ import annotations

import mimetypes

from aiohttp import web

from imagerouter.server.errors import ApiError
from imagerouter.server.keys import storage_key
from imagerouter.storage import LocalStorage

__all__ = ["media"]


async def media(request: web.Request) -> web.StreamResponse:
    """Serve one stored image if its URL's signature is valid and unexpired."""
    storage = request.app.get(storage_key)
    if not isinstance(storage, LocalStorage):
        raise ApiError(404, "not_found", "this server keeps no images on local disk")
    key = request.match_info["key"]
    expires, sig = request.query.get("expires"), request.query.get("sig")
    if not storage.verify(key, expires, sig):
        expired = bool(
            expires and expires.isdigit() and storage.verify_signature(key, expires, sig)
        )
        raise ApiError(
            403,
            "url_expired" if expired else "invalid_signature",
            "this media URL has expired; fetch the job again for a fresh one"
            if expired
            else "this media URL's signature is invalid",
            field="sig",
        )
    try:
        path = storage.path(key)
    except ValueError:
        raise ApiError(404, "not_found", "no such image") from None
    if not path.is_file():
        raise ApiError(404, "not_found", "no such image")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": "private, max-age=300"}
    )
