"""``PngCache``: the farm's generated images, with their costly pixel data built once.

Owned by one farm (:class:`mockproviders.state.FarmState`); bounded by the bytes of pixel data
it holds, least recently used evicted first. An image larger than the whole bound is built
every time it is asked for rather than cached.

:meth:`PngCache.png` builds a missing size in the caller's thread (tens of milliseconds for
1024x1024); :meth:`PngCache.png_async`, used by the image host, builds it in a worker thread
so a first 4K image does not stall the farm's event loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from mockproviders.images import assemble_png, build_idat, target_bytes
from mockproviders.scenario import ImageSettings

__all__ = ["PngCache"]

_Key = tuple[int, int, int]


class PngCache:
    """PNG bytes for (digest, width, height) under one scenario's ``[images]`` settings."""

    def __init__(self, settings: ImageSettings | None = None) -> None:
        self.settings = settings or ImageSettings()
        self._limit = self.settings.cache_mb * 1024 * 1024
        self._idats: OrderedDict[_Key, bytes] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        """Bytes of pixel data the cache holds now."""
        return self._held

    def png(self, digest: str, width: int, height: int) -> bytes:
        """The whole PNG file of the image ``digest`` at ``width`` x ``height``."""
        mode = self.settings.png_bytes
        return assemble_png(mode, width, height, digest, self._idat(width, height))

    async def png_async(self, digest: str, width: int, height: int) -> bytes:
        """:meth:`png`, building a size not cached yet in a worker thread."""
        key = self._key(width, height)
        if key in self._idats:
            return self.png(digest, width, height)
        mode = self.settings.png_bytes
        idat = await asyncio.to_thread(build_idat, mode, *key)
        self._keep(key, idat)
        return assemble_png(mode, width, height, digest, idat)

    def _key(self, width: int, height: int) -> _Key:
        settings = self.settings
        return (
            width,
            height,
            target_bytes(settings.png_bytes, width, height, settings.bytes_per_pixel),
        )

    def _idat(self, width: int, height: int) -> bytes:
        key = self._key(width, height)
        idat = self._idats.get(key)
        if idat is not None:
            self._idats.move_to_end(key)
            return idat
        idat = build_idat(self.settings.png_bytes, *key)
        self._keep(key, idat)
        return idat

    def _keep(self, key: _Key, idat: bytes) -> None:
        """Cache ``idat`` under ``key`` (the loop's thread only), evicting the oldest."""
        if key in self._idats or len(idat) > self._limit:
            return
        self._idats[key] = idat
        self._held += len(idat)
        while self._held > self._limit:
            _, evicted = self._idats.popitem(last=False)
            self._held -= len(evicted)
