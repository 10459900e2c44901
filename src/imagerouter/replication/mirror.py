"""The pure half of the replication: local events → records, records → local state.

:class:`Mirror` does no I/O and never awaits; :class:`~imagerouter.replication.RedisState` feeds it
what Redis says and sends what it returns. The rules:

* **Cooldowns and budgets** only ever lengthen: a record is applied with ``max`` (the same rule
  the ``KEEP_LATEST`` script applies in Redis), so order and duplicates do not matter.
* **Breakers** are last-writer-wins by the transition's wall time (ties: the larger replica id),
  the order the script keeps in Redis too; a record older than what this replica knows is
  ignored. Adopting uses ``CircuitBreaker.apply_remote``, which tells no listener: no echo.
* **Probes**: the replica whose *open* won is the prober. The others open until the same end
  plus ``probe_head_start_s``; when the prober reports half-open they hold off
  ``probe_lease_s`` more (unless their own probes are out), and its verdict reaches them all.
  A prober that gets no traffic or dies only delays the others' own probes by that much.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from imagerouter.listeners import Listeners
from imagerouter.replication.records import BreakerRecord, BudgetRecord, CooldownRecord, Record
from imagerouter.resilience.breaker import BreakerState, BreakerTransition
from imagerouter.resilience.cooldowns import Cooldowns, CooldownStarted
from imagerouter.resilience.token_bucket import TokenBucket

if TYPE_CHECKING:
    from imagerouter.generation import AttemptEvent
    from imagerouter.router import Router

__all__ = ["BudgetWatch", "Mirror"]

log = logging.getLogger(__name__)

_NEVER = (-math.inf, "")
#: A re-published cooldown must beat the stored end by this much (float round trips).
_EPSILON_S = 1e-3


class Mirror:
    """One router's resilience state, as records other replicas can apply (and back)."""

    def __init__(
        self,
        router: Router,
        replica_id: str,
        *,
        probe_head_start_s: float = 1.0,
        probe_lease_s: float = 10.0,
    ) -> None:
        self.router = router
        self.replica_id = replica_id
        self.probe_head_start_s = probe_head_start_s
        self.probe_lease_s = probe_lease_s
        #: Every breaker change adopted from another replica (``.add(fn)``), e.g. for metrics.
        self.remote_transitions: Listeners[BreakerTransition] = Listeners()
        #: Every record that changed local state when applied (``.add(fn)``).
        self.applied: Listeners[Record] = Listeners()
        self.applied_count = 0
        self._clock = router.clock
        self._offset = 0.0
        self.sync_clock()
        #: Breaker LWW order of the newest record known per instance, and that record.
        self._seen: dict[str, tuple[float, str]] = {}
        self._last: dict[str, BreakerRecord] = {}
        self._budget_sent: dict[str, float] = {}

    def sync_clock(self) -> None:
        """Re-read the offset between the wall clock and the router's monotonic clock."""
        self._offset = self._clock.wall() - self._clock.now()

    def cooldown_tables(self) -> Iterator[Cooldowns]:
        """Each distinct Cooldowns table of the router's instances (usually one, shared)."""
        seen: set[int] = set()
        for instance in self.router.instances.values():
            if id(instance.cooldowns) not in seen:
                seen.add(id(instance.cooldowns))
                yield instance.cooldowns

    # --- local events → records ---------------------------------------------------------------

    def cooldown_started(self, event: CooldownStarted) -> CooldownRecord | None:
        """The record of a cooldown this replica started (None for a key that is no instance)."""
        if event.key not in self.router.instances:
            return None
        return CooldownRecord(event.key, event.until + self._offset, event.reason, self.replica_id)

    def transitioned(self, transition: BreakerTransition) -> BreakerRecord | None:
        """The record of a local breaker transition; it becomes the newest this replica knows."""
        instance = self.router.instances.get(transition.name)
        if instance is None:
            return None
        open_until = None
        if transition.to_state is BreakerState.OPEN and transition.open_for_s is not None:
            open_until = transition.at + transition.open_for_s + self._offset
        record = BreakerRecord(
            name=transition.name,
            state=transition.to_state.value,
            at=transition.at + self._offset,
            origin=self.replica_id,
            reason=transition.reason,
            open_until=open_until,
            trips=instance.breaker.trips,
        )
        self._seen[record.name] = record.order
        self._last[record.name] = record
        return record

    def budget_spent(self, name: str) -> BudgetRecord | None:
        """A record if ``name``'s learned x-ratelimit budget is dry for longer than last said."""
        instance = self.router.instances.get(name)
        budget = instance.budget if instance is not None else None
        if budget is None:
            return None
        wait = budget.time_until(1.0)
        if not 0.0 < wait < math.inf:
            return None
        until = self._clock.wall() + wait
        if until <= self._budget_sent.get(name, 0.0) + 0.01:
            return None
        self._budget_sent[name] = until
        return BudgetRecord(name, until, budget.rate_per_s, budget.burst, self.replica_id)

    # --- records → local state ----------------------------------------------------------------

    def receive(self, record: Record) -> bool:
        """Apply a record from the channel, unless it is this replica's own."""
        if record.origin == self.replica_id:
            return False  # applied locally when it happened
        return self.apply(record)

    def apply(self, record: Record) -> bool:
        """Adopt a record (from the channel, the snapshot, or a rejected publish).

        Returns whether local state changed. Never tells the local listeners: no echo.
        """
        if record.name not in self.router.instances:
            return False  # a provider this replica does not run
        if isinstance(record, CooldownRecord):
            changed = self._apply_cooldown(record)
        elif isinstance(record, BudgetRecord):
            changed = self._apply_budget(record)
        else:
            changed = self._apply_breaker(record)
        if changed:
            self.applied_count += 1
            self.applied(record)
        return changed

    def _apply_cooldown(self, record: CooldownRecord) -> bool:
        instance = self.router.instances[record.name]
        return instance.cooldowns.apply(record.name, record.until - self._offset, record.reason)

    def _apply_budget(self, record: BudgetRecord) -> bool:
        instance = self.router.instances[record.name]
        wait = record.until - self._offset - self._clock.now()
        if wait <= 0.0:
            return False
        if instance.budget is None:
            instance.budget = TokenBucket(record.rate_per_s, record.burst, self._clock)
        if instance.budget.time_until(1.0) >= wait:
            return False
        instance.budget.set_from_headers(None, 0, wait)
        self._budget_sent[record.name] = max(self._budget_sent.get(record.name, 0.0), record.until)
        return True

    def _apply_breaker(self, record: BreakerRecord) -> bool:
        breaker = self.router.instances[record.name].breaker
        # Reading the state first lets a transition that is due happen (and be published) now:
        # it is newer than the record, which then loses the comparison below.
        current = breaker.state
        if record.order <= self._seen.get(record.name, _NEVER):
            return False
        self._seen[record.name] = record.order
        self._last[record.name] = record
        now = self._clock.now()
        remote = record.origin != self.replica_id
        state = BreakerState(record.state)
        via = f"{record.reason} (replica {record.origin})"
        transition: BreakerTransition | None
        if state is BreakerState.CLOSED:
            transition = breaker.apply_remote(BreakerState.CLOSED, reason=via)
        elif state is BreakerState.OPEN:
            until = (record.open_until or record.at) - self._offset
            if remote:
                until += self.probe_head_start_s  # the replica that tripped probes first
            if until <= now and current is BreakerState.CLOSED:
                return False  # an old open nobody settled, and local evidence says closed
            transition = breaker.apply_remote(
                BreakerState.OPEN, open_until=until, trips=record.trips, reason=via
            )
        else:
            hold_until = record.at - self._offset + self.probe_lease_s
            if not remote or hold_until <= now:
                return False
            transition = breaker.apply_remote(
                BreakerState.OPEN,
                open_until=hold_until,
                trips=record.trips,
                reason=f"replica {record.origin} is probing",
                hold=True,
            )
        if transition is not None:
            log.info(
                "breaker %s: %s -> %s (%s)",
                transition.name,
                transition.from_state,
                transition.to_state,
                transition.reason,
            )
            self.remote_transitions(transition)
        return True

    # --- resync ---------------------------------------------------------------------------------

    def reconcile(self, stored: Iterable[Record]) -> list[Record]:
        """Adopt what Redis holds that is newer; return what of ours is newer than Redis's."""
        held: dict[tuple[str, str], Record] = {}
        for record in stored:
            held[(record.kind, record.name)] = record
            self.apply(record)
        republish = []
        for record in self.live_records():
            theirs = held.get((record.kind, record.name))
            if theirs is None or _newer(record, theirs):
                republish.append(record)
        return republish

    def live_records(self) -> list[Record]:
        """This replica's state worth sharing: live cooldowns and dry budgets, and the newest
        breaker record of each instance when it is this replica's own."""
        records: list[Record] = []
        for table in self.cooldown_tables():
            for key, entry in table.snapshot()["active"].items():
                if key in self.router.instances:
                    until = entry["until"] + self._offset
                    records.append(CooldownRecord(key, until, entry["reason"], self.replica_id))
        wall = self._clock.wall()
        for name, instance in self.router.instances.items():
            budget = instance.budget
            if budget is not None and 0.0 < (wait := budget.time_until(1.0)) < math.inf:
                until = wall + wait
                records.append(
                    BudgetRecord(name, until, budget.rate_per_s, budget.burst, self.replica_id)
                )
        for name, record in self._last.items():
            if record.origin == self.replica_id and self._seen.get(name) == record.order:
                records.append(record)
        return records

    # --- health ---------------------------------------------------------------------------------

    def health_inputs(self) -> dict[str, dict[str, Any]]:
        """This replica's health inputs and breaker state per instance, for its peers."""
        wall = self._clock.wall()
        return {
            name: {
                **instance.health.inputs(),
                "breaker": instance.breaker.state.value,
                "at": wall,
            }
            for name, instance in self.router.instances.items()
        }

    def fleet_health(self, peers: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
        """Per instance: the fleet's blended score and each replica's own.

        The blend weighs each replica's score by the decayed number of calls behind it (its
        ``weight`` input), so a replica that barely used a provider moves it little; with no
        recent calls anywhere it is the plain mean.
        """
        fleet: dict[str, Any] = {}
        for name, instance in self.router.instances.items():
            inputs = instance.health.inputs()
            scores = {self.replica_id: (inputs["score"], inputs["weight"])}
            for peer, health in peers.items():
                if name in health:
                    scores[peer] = (health[name]["score"], health[name].get("weight") or 0.0)
            total = sum(weight for _, weight in scores.values())
            if total > 1e-9:
                blended = sum(score * weight for score, weight in scores.values()) / total
            else:
                blended = sum(score for score, _ in scores.values()) / len(scores)
            fleet[name] = {
                "score": blended,
                "replicas": {rid: score for rid, (score, _) in scores.items()},
            }
        return fleet


def _newer(ours: Record, theirs: Record) -> bool:
    """Is our record newer than the one Redis holds?"""
    if isinstance(ours, BreakerRecord) or isinstance(theirs, BreakerRecord):
        return ours.order > theirs.order  # type: ignore[operator]
    return ours.until > theirs.until + _EPSILON_S


class BudgetWatch:
    """Looks at a provider's learned x-ratelimit budget after each call it answered, and hands
    ``spent`` the record of a budget dry for longer than last said (:meth:`Mirror.budget_spent`).
    Add :meth:`on_attempt` to the router's attempt listeners."""

    def __init__(self, mirror: Mirror, spent: Callable[[BudgetRecord], None]) -> None:
        self.mirror = mirror
        self.spent = spent
        self._due: set[str] = set()

    def on_attempt(self, event: AttemptEvent) -> None:
        """A call ended: look at its provider's budget once this loop turn is over."""
        # The attempt is announced before the plan learns the call's x-ratelimit headers:
        # look at the budget once the plan's synchronous bookkeeping is over.
        name = event.attempt.provider
        if event.attempt.outcome in ("ok", "error") and name not in self._due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # driven without a loop (a simulator): nothing to tell
                return
            self._due.add(name)
            loop.call_soon(self._check, name)

    def _check(self, name: str) -> None:
        self._due.discard(name)
        record = self.mirror.budget_spent(name)
        if record is not None:
            self.spent(record)
