"""Spend caps shared by every replica: one Redis float per (provider instance, window), added to
atomically and published, so a cap reached on one replica is reached on all.

:class:`SpendShare` listens to each capped instance's
:class:`~imagerouter.resilience.spend.SpendMeter`. Every amount a replica records is queued and
sent by a background task through the ``SPEND_ADD`` script (``INCRBYFLOAT`` into
``{prefix}:spend:{instance}:{window}:{index}``, an expiry one window past its end, and a
``PUBLISH`` of the new total, in one atomic step); the total Redis answers is acknowledged to
the meter, and every other replica adopts the published total as soon as the message arrives.
Routing reads only the local meter: admission never waits on the network.

On (re)connect a replica subscribes, then reads the current windows' totals (so nothing falls
in between). While Redis is down each replica keeps counting its own spend on top of the last
total it knew, keeps the amounts not yet sent, and sends them once Redis is back: no spend is
lost, and a replica cut off from the fleet under-counts only the others' spend meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from imagerouter.replication.connection import (
    guarded,
    make_client,
)
from imagerouter.replication.keys import Keys
from imagerouter.replication.link import ChannelLink
from imagerouter.replication.scripts import SPEND_ADD
from imagerouter.resilience.spend import WINDOWS, SpendAdded, SpendMeter

if TYPE_CHECKING:
    from imagerouter.router import Router

__all__ = ["SpendShare"]

log = logging.getLogger(__name__)

#: A window's total outlives the window by this much.
_TTL_MARGIN_S = 60.0


class SpendShare(ChannelLink):
    """Shares a router's spend-cap meters through Redis; see the module doc. Does nothing
    (opens no connection) when no provider instance of the router has a spend cap."""

    shares = "shared spend"
    meanwhile = "counting locally"

    def __init__(
        self,
        url: str,
        router: Router,
        *,
        prefix: str = "imagerouter",
        replica_id: str,
        op_timeout_s: float = 0.25,
        reconnect_initial_s: float = 0.05,
        reconnect_max_s: float = 2.0,
        start_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.replica_id = replica_id
        self._init_link(op_timeout_s, reconnect_initial_s, reconnect_max_s)
        self.start_timeout_s = start_timeout_s
        self.meters: dict[str, SpendMeter] = {
            name: instance.spend
            for name, instance in router.instances.items()
            if instance.spend is not None
        }
        #: Amounts sent and acknowledged, totals adopted from peers, Redis failures.
        self.sent = 0
        self.applied = 0
        self._pending: dict[tuple[str, str, int], float] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> bool:
        """True when some provider instance has a spend cap to share."""
        return bool(self.meters)

    @property
    def healthy(self) -> bool:
        """True while connected and in sync."""
        return self._healthy

    def status(self) -> dict[str, Any]:
        """The link's state as a JSON-ready dict."""
        return {
            "healthy": self._healthy,
            "instances": sorted(self.meters),
            "sent": self.sent,
            "applied": self.applied,
            "pending": len(self._pending),
            "fallbacks": self.fallbacks,
            "last_error": self.last_error,
        }

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the meters and follow Redis; waits up to ``start_timeout_s`` for the first
        sync, and never fails because Redis is down."""
        if not self.meters or self._tasks:
            return
        for meter in self.meters.values():
            meter.on_spend.add(self._on_spend)
        self._tasks = [
            asyncio.create_task(self._supervise(), name="spend-share-supervisor"),
            asyncio.create_task(self._publisher(), name="spend-share-publisher"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.start_timeout_s):
                await self._first_sync.wait()

    async def aclose(self) -> None:
        """Stop listening, stop the tasks and close the connections (after one last bounded
        attempt to send what is pending)."""
        if not self._tasks:
            return
        for meter in self.meters.values():
            meter.on_spend.remove(self._on_spend)
        if self._pending and self._healthy:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.op_timeout_s * 4):
                    await self._flush()
        self._closing = True
        self._wake.set()
        self._broken.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._disconnect()
        self._healthy = False

    # --- local spend → Redis ----------------------------------------------------------------

    def _on_spend(self, event: SpendAdded) -> None:
        key = (event.name, event.window, event.index)
        self._pending[key] = self._pending.get(key, 0.0) + event.usd
        self._wake.set()

    async def _publisher(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self._healthy:
                await self._flush()

    async def _flush(self) -> None:
        """Send every pending amount; one that fails goes back to the queue."""
        while self._pending and self._healthy and self._script is not None:
            key = next(iter(self._pending))
            usd = self._pending.pop(key)
            name, window, index = key
            head = json.dumps(
                {"name": name, "window": window, "index": index, "origin": self.replica_id},
                separators=(",", ":"),
            )[:-1]
            ttl_ms = int((WINDOWS[window] + _TTL_MARGIN_S) * 1000)
            try:
                total = await guarded(
                    self._script(
                        keys=[self.keys.spend(name, window, index)],
                        args=[repr(usd), ttl_ms, self.keys.spend_channel, head],
                    ),
                    self.op_timeout_s,
                )
            except Exception as exc:  # Redis or not: keep the amount, reconnect
                self._pending[key] = self._pending.get(key, 0.0) + usd
                self._fail(exc, "add spend")
                return
            self.sent += 1
            self.meters[name].acknowledge(window, index, usd, float(total))

    # --- Redis → local meters ---------------------------------------------------------------

    async def _connect(self) -> None:
        """Subscribe, then read the current totals, then send what is pending."""
        self._broken.clear()
        client = make_client(self.url, timeout_s=self.op_timeout_s, name=self.replica_id)
        self._client, self._script = client, client.register_script(SPEND_ADD)
        self._pubsub = pubsub = client.pubsub()
        await guarded(self._subscribe(pubsub, self.keys.spend_channel), self.op_timeout_s * 4)
        wanted = [
            (name, window, meter.index(window))
            for name, meter in self.meters.items()
            for window in meter.caps
        ]
        totals = await guarded(
            client.mget([self.keys.spend(*key) for key in wanted]), self.op_timeout_s
        )
        for (name, window, index), total in zip(wanted, totals, strict=True):
            if total is not None:
                self.meters[name].apply(window, index, float(total))
        self._healthy = True
        self._wake.set()

    def _on_message(self, data: str) -> None:
        try:
            total = json.loads(data)
            if total["origin"] == self.replica_id:
                return  # acknowledged by the script's answer
            meter = self.meters.get(total["name"])
            if meter is not None and meter.apply(
                total["window"], int(total["index"]), float(total["total"])
            ):
                self.applied += 1
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a spend total that does not parse (%s): %.200r", exc, data)
