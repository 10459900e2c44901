"""Resilience: pure state machines on an injected clock, one per concern.

=================  ==========================================================================
``breaker``        the circuit breaker and its count or time window
``health``         the health score: time-decayed success rate and latency against a baseline
``cooldowns``      Retry-After and learned cooldowns per provider key
``retry_budget``   retries into a provider capped at a fraction of its first attempts
``concurrency``    fixed and adaptive (AIMD) concurrency limits
``token_bucket``   pacing toward a provider key, corrected by its ``x-ratelimit-*`` headers
``spend``          spend caps: US dollars per fixed UTC hour and day against the caps
``backoff``        full-jitter exponential backoff
``headers``        reading ``Retry-After``, ``retry-after-ms`` and ``x-ratelimit-*`` headers
``pace``           pacing toward a key that answers 429 without such headers, learned from its 429s
``ranges``         the configs' one check: a value out of its range is refused, naming it
=================  ==========================================================================

None of them sleeps, does I/O or reads the time except through the
:class:`~imagerouter.clock.Clock` it is given, so the router, the simulator's virtual clock and
the Redis replication drive the very same code.
"""
