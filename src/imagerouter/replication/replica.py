"""Redis-shared resilience state: several router replicas acting as one router.

Local first. Each replica keeps its own in-process breakers, cooldowns, budgets and health,
and routing reads only those (:class:`~imagerouter.routing.JobPlan` never waits on the
network). :class:`RedisState` replicates the changes that matter, in the background:

* **Retry-After cooldowns.** ``Cooldowns.on_start`` tells it of every cooldown this replica
  starts or lengthens (a Retry-After, capped at ``max_cooldown_s``, or a learned one); the end,
  as wall time, goes through the ``KEEP_LATEST`` script (``max`` of the ends) which publishes it
  in the same atomic step. Every other replica applies it with ``Cooldowns.apply`` as soon as
  the message arrives (about 0.5 ms median on loopback, a few ms at p99: see
  ``loadtests/bench/bench_redis_state.py``).
* **Breakers.** Every local transition (``router.transitions``) is stored last-writer-wins by
  its wall time and published; the others adopt it with ``CircuitBreaker.apply_remote``, which
  calls no listener, so nothing echoes back. Probes are coordinated without a Redis call on the
  routing path: the replica whose *open* was accepted is the prober; the others stay open
  ``probe_head_start_s`` longer. When the prober goes half-open it says so, and the others hold
  off another ``probe_lease_s`` (unless their own probes are already out); its verdict (closed,
  or open again) reaches everyone. If the prober gets no traffic or dies, the others probe
  themselves when their hold ends: per-replica probes are the fallback, never a stuck breaker.
* **x-ratelimit budgets.** Replicated, not shared: a provider's headers already report the
  key's fleet-wide budget, so when a replica's learned budget runs dry it publishes "no token
  before T" and the others pause that provider until T too (``TokenBucket.set_from_headers``).
* **Spend caps.** Shared, not replicated: :class:`~imagerouter.replication.spend.SpendShare`
  adds each replica's spend to one Redis total per (instance, window) and publishes it.
* **Webhook receivers' pauses** (with ``receivers``, the webhook sender's
  :class:`~imagerouter.webhooks.targets.TargetLimits`): a receiver that refused this replica
  two round trips running with a 503 and a Retry-After is paused on the others until its end,
  kept and published as a cooldown is; a replica it answered 2xx since does not apply it
  (:class:`~imagerouter.replication.receivers.ReceiverPauses`).
* **Webhook receivers' limits.** Every heartbeat counts the live replicas that send webhooks,
  and each takes its share of a receiver's floor and ceiling
  (:meth:`TargetLimits.share <imagerouter.webhooks.targets.TargetLimits.share>`). A replica
  that has not counted them for three heartbeats (its link down) takes the whole, as a replica
  alone does.
* **Health.** Every ``health_interval_s`` each replica writes its health inputs (and breaker
  states) to its own hash and reads its peers'; :meth:`RedisState.fleet_health` blends them
  (weighted by each replica's recent sample weight). Routing keeps using local scores.

Snapshot and resync: records live in hashes with TTLs, so a replica that starts or reconnects
subscribes, reads the hashes, adopts what is newer than its own state, re-publishes what of its
own is newer than Redis's, and then follows the channel.

Redis blinks: every Redis call runs under ``op_timeout_s``. A failure marks the replica
unhealthy (``healthy``, ``status()``, ``fallbacks``), and it carries on from its in-process
state while a supervisor reconnects with backoff and resyncs.

**Windows go through the job store too** (with ``store``, the job store the replicas share): a
Retry-After cooldown, a spent budget or a paused receiver is a window no replica may send into,
so each one this replica starts is also told to its peers through the store's
:class:`~imagerouter.jobs.store.PeerMessages` (PostgreSQL ``NOTIFY``, about a millisecond),
whatever its link's state: Redis may be away for this replica, for a peer or for all of them
(restarted, hung, cut off), and a hang is noticed only after ``op_timeout_s``, longer than a
provider's grace. Every replica applies what arrives there as it applies the channel's records;
each only ever lengthens, so a window that arrives both ways changes nothing. Breaker changes
do not go that way: while Redis is away a breaker is each replica's own (its probes are
coordinated through Redis).

Use::

    async with Router.from_config(cfg) as router, RedisState(url, router) as state:
        ...  # router.generate(...); state.status() for /readyz and metrics

One concept (over 400 lines): a replica's publish, subscribe and resync loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from imagerouter.errors import ConfigError
from imagerouter.private import redact_url
from imagerouter.replication.connection import (
    REDIS_ERRORS,
    guarded,
    make_client,
    replica_name,
)
from imagerouter.replication.keys import Keys
from imagerouter.replication.link import ChannelLink
from imagerouter.replication.mirror import BudgetWatch, Mirror
from imagerouter.replication.receivers import ReceiverPauses
from imagerouter.replication.records import (
    PEER_KINDS,
    BreakerRecord,
    ReceiverPauseRecord,
    Record,
    decode,
    encode,
)
from imagerouter.replication.scripts import KEEP_LATEST
from imagerouter.replication.spend import SpendShare
from imagerouter.resilience.breaker import BreakerTransition
from imagerouter.resilience.cooldowns import CooldownStarted

if TYPE_CHECKING:
    from imagerouter.jobs.store import PeerMessages
    from imagerouter.router import Router
    from imagerouter.webhooks.targets import PauseEarned, TargetLimits

__all__ = ["RedisState"]

log = logging.getLogger(__name__)

#: Cooldown and budget hashes outlive their last end by this much.
_END_MARGIN_S = 60.0

#: Cap on telling the peers of one window through the job store.
_RELAY_TIMEOUT_S = 2.0


class RedisState(ChannelLink):
    """Replicates one router's resilience state through Redis; see the module doc.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` and passwords work as in redis-py).
        router: the router whose state is shared; its listeners are attached on :meth:`start`.
        prefix: the key prefix (and channel) the fleet shares; see
            :mod:`imagerouter.replication.keys`.
        replica_id: this replica's name; default ``host-pid-random``.
        op_timeout_s: cap on every Redis call.
        health_interval_s: heartbeat period (health inputs, liveness of the link).
        probe_head_start_s: how much longer non-probing replicas stay open after a remote open.
        probe_lease_s: how long they hold off once the prober says it went half-open.
        reconnect_initial_s, reconnect_max_s: the reconnect backoff.
        breaker_ttl_s: how long breaker records outlive their last change.
        start_timeout_s: how long :meth:`start` waits for the first sync before carrying on.
        receivers: the webhook sender's per-receiver limits, whose pauses are shared too
            (None: no webhook sender in this process).
        store: the job store the replicas share, the windows' second channel beside Redis, so
            that they hold while Redis is away (None: none; see the module doc).
    """

    def __init__(
        self,
        url: str,
        router: Router,
        *,
        prefix: str = "imagerouter",
        replica_id: str | None = None,
        op_timeout_s: float = 0.25,
        health_interval_s: float = 1.0,
        probe_head_start_s: float = 1.0,
        probe_lease_s: float = 10.0,
        reconnect_initial_s: float = 0.05,
        reconnect_max_s: float = 2.0,
        breaker_ttl_s: float = 3600.0,
        start_timeout_s: float = 1.0,
        receivers: TargetLimits | None = None,
        store: PeerMessages | None = None,
    ) -> None:
        self.url = url
        self.store = store
        self.router = router
        self.keys = Keys(prefix)
        self.replica_id = replica_id or replica_name()
        self._init_link(op_timeout_s, reconnect_initial_s, reconnect_max_s)
        self.health_interval_s = health_interval_s
        self.breaker_ttl_s = breaker_ttl_s
        self.start_timeout_s = start_timeout_s
        #: The pure half: records from local events, local state from records.
        self.mirror = Mirror(
            router,
            self.replica_id,
            probe_head_start_s=probe_head_start_s,
            probe_lease_s=probe_lease_s,
        )
        #: Every breaker change adopted from another replica (``.add(fn)``), e.g. for metrics.
        self.remote_transitions = self.mirror.remote_transitions
        #: Every record that changed this replica's state when applied (``.add(fn)``).
        self.applied = self.mirror.applied
        #: Webhook receivers' pauses (None: not shared).
        self.receivers = (
            None if receivers is None else ReceiverPauses(receivers, self.replica_id, router.clock)
        )
        #: The spend caps' shared totals (idle when no instance has a cap).
        self.spend = SpendShare(
            url,
            router,
            prefix=prefix,
            replica_id=self.replica_id,
            op_timeout_s=op_timeout_s,
            reconnect_initial_s=reconnect_initial_s,
            reconnect_max_s=reconnect_max_s,
            start_timeout_s=start_timeout_s,
        )
        #: Peer replica id → instance → its last published health inputs.
        self.peers: dict[str, dict[str, dict[str, Any]]] = {}
        #: When the live replicas sending webhooks were last counted (wall clock; 0: not
        #: lately), their share of each receiver's limits taken then.
        self._senders_counted_at = 0.0
        # Counters for status() and metrics.
        self.disconnects = 0
        self.resyncs = 0
        self.published = 0
        self.rejected = 0
        #: Windows told to the peers through the job store, and those the store did not take.
        self.relayed = 0
        self.relay_failures = 0

        self._clock = router.clock
        self._since = self._clock.wall()
        self._outbox: dict[tuple[str, str], Record] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._attached = False
        self._synced_once = False
        self._budgets = BudgetWatch(self.mirror, self._enqueue)
        self._relay_box: dict[tuple[str, str], Record] = {}
        self._relay_wake = asyncio.Event()
        self._unsubscribe_peers: Callable[[], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Attach to the router and start following Redis.

        Waits up to ``start_timeout_s`` for the first snapshot (so a replica that starts while
        Redis is up serves with the fleet's state), and never fails because Redis is down; a
        Redis that answers and refuses the URL's credentials is a ConfigError naming
        ``server.state`` (it would not mend by itself).
        """
        if self._tasks:
            return
        self._attach()
        self._tasks = [
            asyncio.create_task(self._supervise(), name="redis-state-supervisor"),
            asyncio.create_task(self._publisher(), name="redis-state-publisher"),
            asyncio.create_task(self._heartbeat(), name="redis-state-heartbeat"),
        ]
        if self.store is not None:
            self._unsubscribe_peers = self.store.subscribe_peers(self._on_peer_message)
            self._tasks.append(asyncio.create_task(self._relayer(), name="redis-state-relay"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.start_timeout_s):
                await self._first_sync.wait()
        if self._refused is not None and not self._synced_once:
            refused = self._refused
            await self.aclose()
            raise ConfigError(
                f"Redis at {redact_url(self.url)} refused this replica's credentials "
                f"({type(refused).__name__}: {refused}): check the user and password in the "
                "URL (a Redis that is down or slow only degrades a replica; this would not "
                "mend by itself)",
                field="server.state",
            )
        await self.spend.start()

    async def aclose(self) -> None:
        """Detach from the router, stop the background tasks and close the connections."""
        await self.spend.aclose()
        self._closing = True
        self._detach()
        if self._unsubscribe_peers is not None:
            self._unsubscribe_peers()
            self._unsubscribe_peers = None
        self._wake.set()
        self._relay_wake.set()
        self._broken.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._disconnect()
        self._healthy = False

    def _attach(self) -> None:
        if self._attached:
            return
        self.router.transitions.add(self._on_transition)
        self.router.attempts.add(self._budgets.on_attempt)
        for cooldowns in self.mirror.cooldown_tables():
            cooldowns.on_start.add(self._on_cooldown)
        if self.receivers is not None:
            self.receivers.limits.on_pause.add(self._on_receiver_pause)
        self._attached = True

    def _detach(self) -> None:
        if not self._attached:
            return
        self.router.transitions.remove(self._on_transition)
        self.router.attempts.remove(self._budgets.on_attempt)
        for cooldowns in self.mirror.cooldown_tables():
            cooldowns.on_start.remove(self._on_cooldown)
        if self.receivers is not None:
            self.receivers.limits.on_pause.remove(self._on_receiver_pause)
        self._attached = False

    # --- reporting ------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while connected, subscribed and in sync; False means "running on local state"."""
        return self._healthy

    def status(self) -> dict[str, Any]:
        """The link's state as a JSON-ready dict, for ``/readyz`` and metrics."""
        status = {
            "backend": "redis",
            "healthy": self._healthy,
            "since": self._since,
            "replica_id": self.replica_id,
            "url": redact_url(self.url),
            "prefix": self.keys.prefix,
            "fallbacks": self.fallbacks,
            "disconnects": self.disconnects,
            "resyncs": self.resyncs,
            "published": self.published,
            "rejected": self.rejected,
            "applied": self.mirror.applied_count,
            "pending": len(self._outbox),
            "relayed": self.relayed,
            "relay_failures": self.relay_failures,
            "last_error": self.last_error,
            "peers": sorted(self.peers),
        }
        if self.receivers is not None:
            status["receiver_pauses_applied"] = self.receivers.applied
            status["webhook_senders"] = self.receivers.limits.senders
        if self.spend.active:
            status["spend"] = self.spend.status()
        return status

    def fleet_health(self) -> dict[str, dict[str, Any]]:
        """Per instance: the fleet's blended health score and each replica's own, from the
        peers' last heartbeat (see :meth:`Mirror.fleet_health`)."""
        return self.mirror.fleet_health(self.peers)

    # --- local changes → Redis (sync listeners: they only queue) -------------------------------

    def _on_cooldown(self, event: CooldownStarted) -> None:
        self._enqueue(self.mirror.cooldown_started(event))

    def _on_transition(self, transition: BreakerTransition) -> None:
        self._enqueue(self.mirror.transitioned(transition))

    def _on_receiver_pause(self, event: PauseEarned) -> None:
        assert self.receivers is not None
        self._enqueue(self.receivers.earned(event))

    def _enqueue(self, record: Record | None) -> None:
        """Queue ``record`` for the publisher; a newer record of the same thing replaces it."""
        if record is None or self._closing:
            return
        self._outbox[(record.kind, record.name)] = record
        self._wake.set()
        self._relay(record)

    def _relay(self, record: Record) -> None:
        """Queue a window for the peers through the job store too."""
        if self.store is None or record.kind not in PEER_KINDS or self._closing:
            return
        self._relay_box[(record.kind, record.name)] = record
        self._relay_wake.set()

    def _on_peer_message(self, data: str) -> None:
        record = decode(data)
        if record is not None and record.kind in PEER_KINDS:
            self._on_message_record(record)

    def _on_message(self, data: str) -> None:
        record = decode(data)
        if record is not None:
            self._on_message_record(record)

    def _on_message_record(self, record: Record) -> None:
        if isinstance(record, ReceiverPauseRecord):
            if self.receivers is not None:
                self.receivers.receive(record)
        else:
            self.mirror.receive(record)

    def _adopt(self, record: Record) -> None:
        """Apply a record Redis holds (a later one than we tried to publish)."""
        if isinstance(record, ReceiverPauseRecord):
            if self.receivers is not None:
                self.receivers.apply(record)
        else:
            self.mirror.apply(record)

    # --- background tasks ---------------------------------------------------------------------

    async def _connect(self) -> None:
        """Subscribe, then read the snapshot (so nothing falls in between), then reconcile."""
        self._broken.clear()
        client = make_client(self.url, timeout_s=self.op_timeout_s, name=self.replica_id)
        self._client, self._script = client, client.register_script(KEEP_LATEST)
        self._pubsub = pubsub = client.pubsub()
        await guarded(self._subscribe(pubsub, self.keys.channel), self.op_timeout_s * 4)
        self._outbox.clear()  # the resync below re-publishes whatever of ours is newer
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(self.keys.cooldowns)
        pipe.hgetall(self.keys.budgets)
        pipe.hgetall(self.keys.breakers)
        pipe.hgetall(self.keys.receiver_pauses)
        cooldowns, budgets, breakers, pauses = await guarded(pipe.execute(), self.op_timeout_s)
        stored = [
            decode(raw) for raw in (*cooldowns.values(), *budgets.values(), *breakers.values())
        ]
        republish: list[Record] = [
            *self.mirror.reconcile(record for record in stored if record is not None)
        ]
        if self.receivers is not None:
            paused = [decode(raw) for raw in pauses.values()]
            republish += self.receivers.reconcile(
                record for record in paused if isinstance(record, ReceiverPauseRecord)
            )
        # a heartbeat now: the peers (and the webhook senders to share receivers' limits
        # with) are known from the start, not a heartbeat later
        await guarded(self._beat(client), self.op_timeout_s)
        if self._synced_once:
            self.resyncs += 1
        self._synced_once = True
        self._set_healthy(True)
        for record in republish:
            self._enqueue(record)

    async def _publisher(self) -> None:
        """Send queued records, oldest first, while the link is healthy."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and self._healthy and not self._closing:
                key = next(iter(self._outbox))
                record = self._outbox.pop(key)
                try:
                    await self._publish(record)
                except Exception as exc:  # a bug here must not stop replication for good
                    log.exception("publishing %s failed", record)
                    self._fail(exc, f"publish {record.kind}")

    async def _publish(self, record: Record) -> None:
        if isinstance(record, BreakerRecord):
            remaining = (record.open_until or 0.0) - self._clock.wall()
            ttl_s = max(self.breaker_ttl_s, remaining + _END_MARGIN_S)
        else:
            ttl_s = record.until - self._clock.wall() + _END_MARGIN_S
        payload = encode(record)
        order = getattr(record, record.order_field)  # what the script compares
        try:
            stored = await guarded(
                self._script(
                    keys=[self.keys.records(record.kind)],
                    args=[
                        record.name,
                        payload,
                        self.keys.channel,
                        max(1, int(ttl_s * 1000)),
                        record.order_field,
                        repr(order),
                        record.origin,
                    ],
                ),
                self.op_timeout_s,
            )
        except REDIS_ERRORS as exc:
            self._fail(exc, f"publish {record.kind}")
            return
        if stored is None:
            self.published += 1
            return
        self.rejected += 1  # Redis holds a later record: adopt it
        later = decode(stored)
        if later is not None:
            self._adopt(later)

    async def _relayer(self) -> None:
        """Tell the peers, through the job store, each window queued (the latest of each
        thing); one warning for a run of failures (the store is away too)."""
        assert self.store is not None
        failing = False
        while not self._closing:
            await self._relay_wake.wait()
            self._relay_wake.clear()
            while self._relay_box and not self._closing:
                key = next(iter(self._relay_box))
                record = self._relay_box.pop(key)
                try:
                    async with asyncio.timeout(_RELAY_TIMEOUT_S):
                        sent = await self.store.tell_peers(encode(record))
                except Exception as exc:  # the store is away too: Redis is the one way left
                    self.relay_failures += 1
                    if not failing:
                        log.warning(
                            "telling the peers of %s %s through the job store failed: %s",
                            record.kind,
                            record.name,
                            exc,
                        )
                    failing = True
                    continue
                failing = False
                if sent:
                    self.relayed += 1

    async def _heartbeat(self) -> None:
        """Share this replica's health inputs and read its peers'; a failure breaks the link."""
        while not self._closing:
            await asyncio.sleep(self.health_interval_s)
            self.mirror.sync_clock()
            if not self._healthy or self._client is None:
                self._forget_senders()
                continue
            try:
                await guarded(self._beat(self._client), self.op_timeout_s)
            except Exception as exc:
                self._fail(exc, "heartbeat")

    @property
    def _heartbeat_life_s(self) -> float:
        """How long a heartbeat counts: three periods (a missed one or two is no death)."""
        return 3 * self.health_interval_s

    async def _beat(self, client: Redis) -> None:
        wall = self._clock.wall()
        ttl_ms = max(1, int(self._heartbeat_life_s * 1000))
        fields = {name: json.dumps(inputs) for name, inputs in self.mirror.health_inputs().items()}
        mine = self.keys.health(self.replica_id)
        pipe = client.pipeline(transaction=False)
        if fields:
            pipe.hset(mine, mapping=fields)
            pipe.pexpire(mine, ttl_ms)
        self._mark_live(pipe, self.keys.replicas, wall, ttl_ms)
        pipe.zrange(self.keys.replicas, 0, -1)
        if self.receivers is not None:
            self._mark_live(pipe, self.keys.webhook_senders, wall, ttl_ms)
            pipe.zcard(self.keys.webhook_senders)
            *_, members, _, _, _, senders = await pipe.execute()
            self._count_senders(senders, wall)
        else:
            *_, members = await pipe.execute()
        others = [m for m in members if m != self.replica_id]
        peers: dict[str, dict[str, dict[str, Any]]] = {}
        if others:
            pipe = client.pipeline(transaction=False)
            for peer in others:
                pipe.hgetall(self.keys.health(peer))
            for peer, health in zip(others, await pipe.execute(), strict=True):
                if health:
                    peers[peer] = {name: json.loads(raw) for name, raw in health.items()}
        self.peers = peers

    def _mark_live(self, pipe: Pipeline, key: str, wall: float, ttl_ms: int) -> None:
        """Queue on ``pipe``: this replica live in the sorted set ``key`` now, those not heard
        from for ``ttl_ms`` out of it, and the set itself gone that long after the last."""
        pipe.zadd(key, {self.replica_id: wall})
        pipe.zremrangebyscore(key, "-inf", wall - ttl_ms / 1000)
        pipe.pexpire(key, ttl_ms)

    def _count_senders(self, senders: int, wall: float) -> None:
        """Share each webhook receiver's limits among the ``senders`` counted now."""
        assert self.receivers is not None
        self._senders_counted_at = wall
        self.receivers.limits.share(senders)

    def _forget_senders(self) -> None:
        """Without a count for a heartbeat's life (as long as its own would last in Redis),
        act alone: the peers may be gone, and this replica cannot tell."""
        if self.receivers is None or not self._senders_counted_at:
            return
        if self._clock.wall() - self._senders_counted_at > self._heartbeat_life_s:
            self._senders_counted_at = 0.0
            self.receivers.limits.share(1)

    # --- link state -----------------------------------------------------------------------------

    def _set_healthy(self, healthy: bool) -> None:
        if healthy == self._healthy:
            return
        if not healthy:
            self.disconnects += 1
        else:
            log.info("shared state in sync (%s, prefix %s)", redact_url(self.url), self.keys.prefix)
        self._healthy = healthy
        self._since = self._clock.wall()
        if healthy:
            self._wake.set()
