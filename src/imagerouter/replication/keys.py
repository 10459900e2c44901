"""Where the shared state lives in Redis: every key and the one channel, under one prefix.

::

    {prefix}:cooldowns             hash  instance → CooldownRecord JSON   TTL: last end + 60 s
    {prefix}:budgets               hash  instance → BudgetRecord JSON     TTL: last end + 60 s
    {prefix}:breakers              hash  instance → BreakerRecord JSON    TTL: ``breaker_ttl_s``
    {prefix}:receiver_pauses       hash  webhook receiver origin → ReceiverPauseRecord JSON
                                                                          TTL: last end + 60 s
    {prefix}:health:{replica}      hash  instance → health inputs JSON    TTL: 3 heartbeats
    {prefix}:replicas              zset  replica id, scored by its last heartbeat (unix s)
    {prefix}:webhook_senders       zset  the same, of the replicas that send webhooks
    {prefix}:rl:{policy}:{api key} hash  tokens, ts (the API's per-key token bucket)
    {prefix}:events                channel: every accepted record, as the JSON stored
    {prefix}:spend:{instance}:{window}:{index}
                                   float (INCRBYFLOAT) US dollars spent by the fleet in that
                                   window                              TTL: window + 60 s
    {prefix}:spend                 channel: each new spend total, as SpendTotal JSON
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names for one prefix (one fleet of replicas; one test)."""

    prefix: str = "imagerouter"

    @property
    def cooldowns(self) -> str:
        """Hash of live Retry-After cooldowns, by provider instance."""
        return f"{self.prefix}:cooldowns"

    @property
    def budgets(self) -> str:
        """Hash of spent x-ratelimit budgets ("no token before"), by provider instance."""
        return f"{self.prefix}:budgets"

    @property
    def breakers(self) -> str:
        """Hash of the last breaker transition, by provider instance."""
        return f"{self.prefix}:breakers"

    @property
    def receiver_pauses(self) -> str:
        """Hash of live webhook receiver pauses, by the receiver's origin."""
        return f"{self.prefix}:receiver_pauses"

    @property
    def webhook_senders(self) -> str:
        """Sorted set of live replicas that send webhooks, scored by their last heartbeat
        (they share each receiver's limits)."""
        return f"{self.prefix}:webhook_senders"

    def records(self, kind: str) -> str:
        """The hash that holds the records of ``kind`` (a record class's ``kind``)."""
        return {
            "cooldown": self.cooldowns,
            "budget": self.budgets,
            "breaker": self.breakers,
            "receiver_pause": self.receiver_pauses,
        }[kind]

    @property
    def replicas(self) -> str:
        """Sorted set of live replicas, scored by their last heartbeat."""
        return f"{self.prefix}:replicas"

    @property
    def channel(self) -> str:
        """The pub/sub channel every accepted record is published on."""
        return f"{self.prefix}:events"

    def health(self, replica: str) -> str:
        """Hash of one replica's health inputs, by provider instance."""
        return f"{self.prefix}:health:{replica}"

    def bucket(self, policy: str, key: str) -> str:
        """The token bucket of one API key under one rate-limit policy."""
        return f"{self.prefix}:rl:{policy}:{key}"

    @property
    def spend_channel(self) -> str:
        """The pub/sub channel every new spend total is published on."""
        return f"{self.prefix}:spend"

    def spend(self, name: str, window: str, index: int) -> str:
        """The fleet's US dollars spent on one provider instance in one spend-cap window."""
        return f"{self.prefix}:spend:{name}:{window}:{index}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix (for cleanup)."""
        return f"{self.prefix}:*"
