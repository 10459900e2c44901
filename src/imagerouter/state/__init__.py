"""Resilience state backends: in-process (the default) and Redis, shared by router replicas.

* :class:`LocalState`: each replica on its own.
* :class:`RedisState`: breakers, Retry-After cooldowns, x-ratelimit budgets and health inputs
  replicated through Redis (:mod:`imagerouter.state.replica`), with the pure apply/reconcile
  rules in :class:`Mirror` (:mod:`imagerouter.state.mirror`).
* :class:`RedisRateLimiter`: the API's per-key rate limits as one atomic Redis token bucket per
  key for the whole fleet (:mod:`imagerouter.state.ratelimit`).
* :class:`Keys`: the key and channel layout (:mod:`imagerouter.state.keys`).
"""

from __future__ import annotations

from imagerouter.state.keys import Keys
from imagerouter.state.local import LocalState
from imagerouter.state.mirror import Mirror
from imagerouter.state.ratelimit import RedisRateLimiter
from imagerouter.state.replica import RedisState

__all__ = ["Keys", "LocalState", "Mirror", "RedisRateLimiter", "RedisState"]
