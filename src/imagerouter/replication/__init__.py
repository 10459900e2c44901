"""Replication: the router's resilience state shared by replicas through Redis (without it,
each replica keeps its own state in process, the default).

* :class:`RedisState`: breakers, Retry-After cooldowns, x-ratelimit budgets and health inputs
  replicated through Redis (:mod:`imagerouter.replication.replica`), with the pure apply/reconcile
  rules in :class:`Mirror` (:mod:`imagerouter.replication.mirror`); the webhook receivers'
  pauses, whose rules are :class:`~imagerouter.replication.receivers.ReceiverPauses`; and the
  count of replicas sending webhooks, among which each receiver's limits are shared.
* :class:`RedisRateLimiter`: the API's per-key rate limits as one atomic Redis token bucket per
  key for the whole fleet (:mod:`imagerouter.replication.ratelimit`).
* :class:`SpendShare`: spend-cap totals per provider instance and window, added to atomically
  in Redis and published (:mod:`imagerouter.replication.spend`); :class:`RedisState` runs it.
* :class:`Keys`: the key and channel layout (:mod:`imagerouter.replication.keys`).
"""

from __future__ import annotations

from imagerouter.replication.keys import Keys
from imagerouter.replication.mirror import Mirror
from imagerouter.replication.ratelimit import RedisRateLimiter
from imagerouter.replication.replica import RedisState
from imagerouter.replication.spend import SpendShare

__all__ = ["Keys", "Mirror", "RedisRateLimiter", "RedisState", "SpendShare"]
