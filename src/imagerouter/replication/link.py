"""One replica's link to a Redis channel that never holds anything up: connect, sync, follow the
channel, and on any failure fall back to local state and reconnect with backoff.

:class:`ChannelLink` owns the connection, the pub/sub subscription and the supervisor loop;
:class:`~imagerouter.replication.replica.RedisState` (breakers, cooldowns, budgets) and
:class:`~imagerouter.replication.spend.SpendShare` (spend caps) build on it, each with its own
channel, sync and message handling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from imagerouter.lifecycle import AsyncResource
from imagerouter.replication.connection import (
    REDIS_ERRORS,
    REFUSED_CREDENTIALS,
    Backoff,
    aclose_quietly,
    guarded,
)

__all__ = ["ChannelLink"]

log = logging.getLogger(__name__)


class ChannelLink(AsyncResource):
    """The connect / sync / follow / fall back loop of a replica's Redis link.

    A subclass implements :meth:`_connect` (make the client, :meth:`_subscribe`, then read
    what it must and mark itself healthy) and :meth:`_on_message`, and calls :meth:`_fail` on
    any Redis failure; :meth:`_supervise` runs as one of its background tasks.
    """

    #: What the link shares, for log lines ("shared state", "shared spend").
    shares = "shared state"
    #: What the replica does while the link is down, for log lines.
    meanwhile = "running on local state"

    def _init_link(
        self, op_timeout_s: float, reconnect_initial_s: float, reconnect_max_s: float
    ) -> None:
        """Set up the link's state; call it from ``__init__``."""
        self.op_timeout_s = op_timeout_s
        self.fallbacks = 0
        self.last_error: str | None = None
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self._healthy = False
        #: The warning of the link being down was logged, and the link has not worked since:
        #: one warning an outage, the first one too (a replica that never reached Redis).
        self._down_told = False
        self._closing = False
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._script: Any = None
        self._broken = asyncio.Event()
        self._first_sync = asyncio.Event()
        #: Redis refused this replica's credentials (a wrong password or user): a mistake in
        #: the config, not an outage, when it happens before the link ever worked.
        self._refused: BaseException | None = None

    async def _connect(self) -> None:
        raise NotImplementedError

    def _on_message(self, data: str) -> None:
        raise NotImplementedError

    def _set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy

    async def _supervise(self) -> None:
        """Connect, sync, follow the channel; on any failure, fall back and reconnect."""
        while not self._closing:
            try:
                await self._connect()
            except Exception as exc:  # whatever it was, the supervisor must live on
                self._fail(exc, "connect")
                await self._disconnect()
                self._first_sync.set()
                await asyncio.sleep(self._backoff.next())
                continue
            self._first_sync.set()
            self._backoff.reset()
            self._down_told = False
            try:
                await self._follow()
            except Exception as exc:
                self._fail(exc, "subscription")
            await self._disconnect()
            if not self._closing:
                await asyncio.sleep(self._backoff.next())

    async def _subscribe(self, pubsub: PubSub, channel: str) -> None:
        """Subscribe and wait for the confirmation: from then on, every message reaches us."""
        await pubsub.subscribe(channel)
        while True:
            message = await pubsub.get_message(timeout=self.op_timeout_s)
            if message is not None and message["type"] == "subscribe":
                return

    async def _follow(self) -> None:
        """Handle every message on the channel until the link breaks."""
        pubsub = self._pubsub
        assert pubsub is not None
        while not self._broken.is_set() and not self._closing:
            message = await guarded(pubsub.get_message(timeout=0.2), 0.2 + self.op_timeout_s)
            if message is not None and message["type"] == "message":
                self._on_message(message["data"])

    def _fail(self, exc: BaseException, where: str) -> None:
        """A Redis call failed: go on locally, count it, and have the supervisor reconnect."""
        self.fallbacks += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"[:300]
        if isinstance(exc, REFUSED_CREDENTIALS):
            self._refused = exc
        if not isinstance(exc, REDIS_ERRORS):
            log.error("unexpected error in the %s (%s)", self.shares, where, exc_info=exc)
        if self._healthy or not self._down_told:
            log.warning("%s unavailable (%s); %s", self.shares, self.last_error, self.meanwhile)
            self._down_told = True
        self._set_healthy(False)
        self._broken.set()

    async def _disconnect(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = self._script = None
        await aclose_quietly(pubsub)
        await aclose_quietly(client)
