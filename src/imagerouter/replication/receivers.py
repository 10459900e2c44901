"""The pure half of sharing webhook receivers' pauses: a pause earned here → a record, a record
→ a pause here.

A receiver that refuses two round trips running with a Retry-After is paused by the replica it
refused (:class:`~imagerouter.webhooks.targets.TargetLimits`). Without sharing, every other
replica goes on sending to it until it is refused twice too, so a fleet of N sends about N
times what one replica would into the receiver's window. A pause a 503 earned (the receiver is
unavailable) is the fleet's; one a 429 earned stays with the replica it refused (this client
sends too many; another's requests may be what the receiver serves). The fleet's pause's end
goes through Redis like a provider's Retry-After cooldown: kept as the latest end (``max``),
read back by a replica that (re)connects, and applied as it arrives by every other replica with
nothing in flight to the receiver; one with requests out applies it at their first refusal
(:meth:`TargetLimits.pause <imagerouter.webhooks.targets.TargetLimits.pause>`). A replica whose
own request, sent after the refusals began, was answered 2xx does not apply it: such a receiver
refuses only what is beyond its capacity (two replicas sharing it see more refusals each than
one would), and pausing the replica it serves would cost what it can take
(``bench_webhook_fleet`` measured the version that paused everyone at once: the backlog after
an outage drained in up to twice the time).

A record names the receiver by its origin (``scheme://host:port``) only: a webhook URL's path
or query may hold the customer's token and never leaves the process. Ends are wall-clock
seconds, converted to and from each replica's loop clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import cast

from imagerouter.clock import Clock
from imagerouter.replication.records import ReceiverPauseRecord
from imagerouter.transport.wire import Origin, origin_text, split_url
from imagerouter.webhooks.targets import PauseEarned, TargetLimits

__all__ = ["ReceiverPauses"]

#: A re-published pause must beat the stored end by this much (float round trips).
_EPSILON_S = 1e-3


class ReceiverPauses:
    """One webhook sender's receiver pauses, as records other replicas can apply (and back)."""

    def __init__(self, limits: TargetLimits, replica_id: str, clock: Clock) -> None:
        self.limits = limits
        self.replica_id = replica_id
        self._clock = clock
        #: Pauses adopted from other replicas as they arrived (not those held until a refusal
        #: here bore them out) that began or lengthened one here.
        self.applied = 0
        #: The fleet's pauses this replica knows, by origin: earned here or adopted.
        self._known: dict[str, ReceiverPauseRecord] = {}

    def earned(self, event: PauseEarned) -> ReceiverPauseRecord | None:
        """The record of a pause this replica's requests earned, if it is the fleet's: one a
        503 earned (the receiver is unavailable). A 429's is this replica's own: it says this
        client sends too many, and another replica's requests may be what the receiver serves
        (``bench_webhook_fleet``: sharing those slowed the backlog after an outage)."""
        if event.status != 503:
            return None
        offset = self._clock.wall() - _loop_time()
        name = origin_text(cast(Origin, event.key))
        record = ReceiverPauseRecord(
            name, event.until + offset, self.replica_id, event.since + offset
        )
        self._remember(record)
        return record

    def receive(self, record: ReceiverPauseRecord) -> bool:
        """Apply a record from the channel, unless it is this replica's own."""
        if record.origin == self.replica_id:
            return False  # paused here when it happened
        return self.apply(record)

    def apply(self, record: ReceiverPauseRecord) -> bool:
        """Pause the record's receiver until its end (a longer pause here is kept, and none is
        applied if it answered 2xx a request of ours sent since its refusals began); whether
        that began or lengthened a pause. Tells no ``on_pause`` listener: no echo."""
        offset = _loop_time() - self._clock.wall()
        if record.until + offset <= _loop_time():
            return False
        try:
            origin = split_url(record.name)[0]
        except ValueError:
            return False  # not an origin this version can read
        if not self.limits.pause(origin, record.until + offset, since=record.since + offset):
            return False
        self._remember(record)
        self.applied += 1
        return True

    def reconcile(self, stored: Iterable[ReceiverPauseRecord]) -> list[ReceiverPauseRecord]:
        """Adopt what Redis holds; return what of ours ends later than what it holds."""
        held: dict[str, ReceiverPauseRecord] = {}
        for record in stored:
            held[record.name] = record
            self.apply(record)
        return [
            record
            for record in self.live_records()
            if record.name not in held or record.until > held[record.name].until + _EPSILON_S
        ]

    def live_records(self) -> list[ReceiverPauseRecord]:
        """The fleet's pauses running here (earned here or adopted), as this replica's
        records."""
        self._forget_ended()
        return [replace(record, origin=self.replica_id) for record in self._known.values()]

    def _remember(self, record: ReceiverPauseRecord) -> None:
        self._forget_ended()  # pauses are rare: the ended ones go as new ones come
        self._known[record.name] = record

    def _forget_ended(self) -> None:
        wall = self._clock.wall()
        for name in [name for name, record in self._known.items() if record.until <= wall]:
            del self._known[name]


def _loop_time() -> float:
    """The running loop's clock (a pause's end is in it)."""
    return asyncio.get_running_loop().time()
