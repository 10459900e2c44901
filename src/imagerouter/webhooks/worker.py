"""The delivery worker: sends due webhooks under leases, and schedules their retries.

Deliveries are rows of the store, enqueued in the same transaction as the final job event, so
this worker only has to find due ones:

* a store that can (SQLite: ``hand_deliveries``) hands a completion's delivery straight to
  this worker while it has a free slot: written leased to it in the completion's transaction,
  its body fixed and the account's signing secrets read, and taken here after the commit, with
  no claim (``job_body`` builds the body there, from the final job);
* a dispatcher leases as many due deliveries as there are free slots, when woken by a final
  job event (with a handoff: by a commit that left a delivery for a claim) or a replay, when a
  retry this worker scheduled falls due, and otherwise every ``poll_interval_s`` (for retries
  scheduled by other processes, or before a restart);
* each leased delivery is sent once, its attempt logged and its next attempt (if any) written
  by :meth:`~imagerouter.jobs.store.WebhookStore.record_delivery_attempts`: the attempts that
  end in one turn of the event loop are written together, in one store call, and each
  delivery's slot is freed only once its record is durable;
* a process that dies mid-attempt leaves a lease that expires after ``lease_s``, and the
  delivery is sent again, with the same ``webhook-id``: delivery is at least once;
* no head-of-line blocking: an attempt still waiting after ``slow_after_s`` (a receiver that
  accepts and never answers) moves aside and frees its slot for the next due delivery, up to
  ``slow_max`` such attempts at once (each an open socket, ended by the sender's timeout);
  the sender sends at most ``per_target`` requests at once to one host and port, more (up to
  ``per_target_max``) while that receiver keeps up
  (:class:`~imagerouter.webhooks.targets.TargetLimits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.jobs.errors import StoreUnavailable
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.rules import PROGRESS_EVENT
from imagerouter.jobs.store import EventLog, WebhookStore
from imagerouter.jobs.types import (
    AttemptRecord,
    Deferral,
    Delivery,
    DeliveryAttempt,
    DeliveryHandoff,
    HandedDelivery,
    Job,
    JobEvent,
)
from imagerouter.lifecycle import AsyncResource
from imagerouter.webhooks.retry import NotSent, RetrySchedule, SendResult, decide
from imagerouter.webhooks.sender import WebhookSender

__all__ = ["AttemptObserver", "BodyBuilder", "DeliveryConfig", "DeliveryStore", "DeliveryWorker"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Builds the JSON body of a delivery (on its first attempt; it is then fixed).
BodyBuilder = Callable[[Delivery], Awaitable[str]]
#: Builds the body of a delivery from its final job, without reading the store (for a
#: handoff: on the store's thread, in the transaction that completes the job).
JobBodyBuilder = Callable[[Job, Delivery], str]


class AttemptObserver(Protocol):
    """Told of every attempt the worker makes (not of deliveries given back unsent): its
    outcome (``succeeded``, ``retry``, ``failed``, ``disabled``, ``refused``), the receiver's
    status (None without an answer) and how long it took; e.g. the server's metrics
    (:func:`imagerouter.server.observability.webhook_observer`)."""

    def __call__(
        self, outcome: str, *, status: int | None = None, duration_s: float | None = None
    ) -> None: ...


class Superseded(Exception):
    """What a body builder raises for a ``job.progress`` delivery whose job is already final:
    the final webhook says all there is, and no progress may follow it (README: progress
    webhooks go out before the final one). The attempt is recorded as refused, nothing sent."""


class DeliveryStore(WebhookStore, EventLog, Protocol):
    """What the worker needs of the store: the deliveries and signing secrets, and the job
    events that wake it."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How the delivery worker runs.

    Attributes:
        concurrency: attempts in flight at once, counting only those younger than
            ``slow_after_s``.
        slow_after_s: after this long an attempt moves aside and frees its slot.
        slow_max: most attempts aside at once (past it, slow attempts keep their slots).
        per_target: requests in flight to one host and port that the sender always allows
            (unless it refuses with a Retry-After); with replicas sharing state, the fleet's,
            each taking its share.
        per_target_max: the most it allows one host and port that keeps up (its limit grows
            from ``per_target`` while the receiver answers 2xx promptly, and falls on a 429,
            5xx, timeout or failed connection); the fleet's too.
        lease_s: how long an attempt may run before another process may retake it (longer
            than the sender's timeout).
        poll_interval_s: how often due deliveries are looked for when nothing woke the worker.
        shutdown_grace_s: how long in-flight attempts may finish on stop.
        schedule: the retry schedule.
    """

    concurrency: int = 64
    slow_after_s: float = 0.25
    slow_max: int = 1024
    per_target: int = 4
    per_target_max: int = 64
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    shutdown_grace_s: float = 5.0
    schedule: RetrySchedule = field(default_factory=RetrySchedule)


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A delivery leased to this worker waiting for a slot, with what its attempt is given:
    a claim's shared lookups of the secrets and first bodies, or a handoff's secrets."""

    delivery: Delivery
    secrets_lookup: asyncio.Future[list[str]] | None = None
    bodies: asyncio.Future[dict[str, str]] | None = None
    known_secrets: Sequence[str] | None = None


class DeliveryWorker(AsyncResource):
    """Sends due deliveries of ``store`` through ``sender``; see the module doc. ``observe``
    is told of each attempt made (see :class:`AttemptObserver`)."""

    def __init__(
        self,
        store: DeliveryStore,
        sender: WebhookSender,
        build_body: BodyBuilder,
        config: DeliveryConfig,
        *,
        owner: str | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        job_body: JobBodyBuilder | None = None,
        observe: AttemptObserver | None = None,
    ) -> None:
        self.store, self.sender, self.config = store, sender, config
        self._observe = observe
        self._build_body = build_body
        self._job_body = job_body
        #: Deliveries leased to this worker (handed over or claimed) waiting for a slot, with
        #: the arguments of their attempt: every attempt starts from here (_start_waiting).
        self._waiting: deque[_Waiting] = deque()
        #: The store's ``hand_deliveries``, while this worker takes what it hands over.
        self._hand: Callable[[DeliveryHandoff | None], None] | None = None
        #: This worker's lease owner id, unique per process start.
        self.owner = owner or new_id("dlv", 12)
        self._rng = rng or random.Random()
        self._clock = clock or MonotonicClock()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._due: list[float] = []  # a heap of retry times this worker scheduled
        self._inflight: set[asyncio.Task[None]] = set()
        #: Attempts in flight past ``slow_after_s``: they hold no slot.
        self._slow: set[asyncio.Task[None]] = set()
        self._timers: dict[asyncio.Task[None], asyncio.TimerHandle] = {}
        #: ``job.progress`` attempts in flight, by job: its final webhook waits for them.
        self._progress: dict[str, set[asyncio.Task[None]]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: Store writes in flight; each batch is one store call for a turn of the loop.
        self._writers: set[asyncio.Task[None]] = set()
        self._records = _Batch(
            self.store.record_delivery_attempts, "webhook-attempts", self._writers
        )
        self._deferrals = _Batch(self._write_deferrals, "webhook-deferrals", self._writers)
        #: Deliveries given back unsent since start, by why (``NotSent.reason``).
        self.deferred: dict[str, int] = {"busy": 0, "paused": 0}

    @property
    def inflight(self) -> int:
        """Attempts running right now."""
        return len(self._inflight)

    @property
    def slow(self) -> int:
        """Attempts running past ``slow_after_s``, moved aside."""
        return len(self._slow)

    async def start(self) -> None:
        """Listen for final job events, take the deliveries the store hands over (when it
        can, and a ``job_body`` was given), and start dispatching."""
        self._unsubscribe = self.store.subscribe(self._on_events)
        hand = getattr(self.store, "hand_deliveries", None)
        if self._job_body is not None and hand is not None:
            hand(
                DeliveryHandoff(
                    self.owner, self.config.lease_s, self._room, self._job_body, self._take
                )
            )
            self._hand = hand
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name="webhook-dispatcher"
        )

    def wake(self) -> None:
        """Look for due deliveries now (a job finished, or a replay was asked for)."""
        self._wakeup.set()

    async def aclose(self) -> None:
        """Stop leasing; give back the deliveries leased to this worker that have not
        started (any worker's next claim sends them); let attempts in flight finish within
        the grace, then cancel them (their leases expire and another start sends them
        again)."""
        self._stopping = True  # room() is 0 from now on: no later commit hands one over
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._wakeup.set()
        if self._dispatcher is not None:  # a claim in flight lands in _waiting first
            await self._dispatcher
            self._dispatcher = None
        await self._release_waiting()
        if self._hand is not None:
            self._hand(None)
            self._hand = None
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self.config.shutdown_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._writers:  # a cancelled attempt's record may still be being written
            await asyncio.wait(set(self._writers))

    async def _release_waiting(self) -> None:
        """Give back the leases of the deliveries waiting for a slot at stop, so that they
        are sent at another worker's next claim rather than after ``lease_s``. With a
        handoff the store is asked even when none waits: a commit that read ``room()``
        before the stop hands its deliveries over before the store answers (see
        :class:`~imagerouter.jobs.types.DeliveryHandoff`), and those are given back in turn.
        Best effort: one the store does not hear of is sent once its lease runs out. A
        claim's shared lookups of those given back are awaited first, so that the bodies it
        was fixing are fixed (sent as they are by whoever sends them) and no task of this
        worker outlives its stop."""
        while self._waiting or self._hand is not None:
            ids = [waiting.delivery.id for waiting in self._waiting]
            lookups = {
                lookup
                for waiting in self._waiting
                for lookup in (waiting.secrets_lookup, waiting.bodies)
                if lookup is not None
            }
            self._waiting.clear()
            await asyncio.gather(*lookups, return_exceptions=True)
            try:
                released = await self.store.release_deliveries(self.owner, ids)
            except Exception as exc:
                log.warning("%d webhooks not started wait for their leases: %s", len(ids), exc)
                return
            if ids:
                log.info("gave back %d webhooks not started, of %d waiting", released, len(ids))
            if not self._waiting:
                return

    def _on_events(self, events: Sequence[JobEvent]) -> None:
        # with a handoff, the store says when a final event's delivery was left for a claim
        if self._hand is None and any(event.final for event in events):
            self.wake()

    def _free(self) -> int:
        """Slots not running an attempt."""
        return self.config.concurrency - (len(self._inflight) - len(self._slow))

    def _room(self) -> int:
        """How many more deliveries this worker may take now, handed over or claimed (the
        store reads it on its thread): none once it is stopping."""
        if self._stopping:
            return 0
        return self._free() - len(self._waiting)

    def _take(self, handed: Sequence[HandedDelivery], queued: bool) -> None:
        """A commit's handed deliveries: start them as slots allow; wake the dispatcher when
        the commit also left some for a claim."""
        self._waiting.extend(_Waiting(item.delivery, known_secrets=item.secrets) for item in handed)
        self._start_waiting()
        if queued:
            self.wake()

    def _start_waiting(self) -> None:
        """Start the waiting deliveries, oldest first, while there are free slots: the one
        place an attempt starts, so that a delivery handed over while a claim ran and the
        claim's own never run beyond ``concurrency`` together."""
        while self._waiting and not self._stopping and self._free() > 0:
            self._launch(self._waiting.popleft())

    def _launch(self, waiting: _Waiting) -> None:
        """Start one attempt in a slot of its own (see :meth:`_deliver`)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            self._deliver(
                waiting.delivery, waiting.secrets_lookup, waiting.bodies, waiting.known_secrets
            ),
            name=f"webhook-{waiting.delivery.id}",
        )
        self._inflight.add(task)
        self._timers[task] = loop.call_later(self.config.slow_after_s, self._aside, task)
        task.add_done_callback(self._done)
        if waiting.delivery.event_type == PROGRESS_EVENT:
            job_id = waiting.delivery.job_id
            self._progress.setdefault(job_id, set()).add(task)
            task.add_done_callback(lambda done: self._progress_done(job_id, done))

    def _progress_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        tasks = self._progress.get(job_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._progress[job_id]

    def _note_due(self, when: float) -> None:
        heapq.heappush(self._due, when)
        self._wakeup.set()

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._start_waiting()
            free = self._room()
            claimed: list[Delivery] = []
            if free > 0:
                now = self._clock.wall()
                while self._due and self._due[0] <= now:  # being claimed now
                    heapq.heappop(self._due)
                try:
                    claimed = await self.store.claim_deliveries(
                        self.owner, free, self.config.lease_s
                    )
                except StoreUnavailable as exc:  # expected while it lasts: no traceback
                    log.warning("claiming webhook deliveries waits for the store: %s", exc)
                except Exception:
                    log.exception("claiming webhook deliveries failed")
            # one read of an account's signing secrets serves all its deliveries of this claim,
            # and one write fixes the bodies of all those sent for the first time
            secrets: dict[str, asyncio.Task[list[str]]] = {}
            first = [delivery for delivery in claimed if delivery.body is None]
            bodies = asyncio.ensure_future(self._fix_bodies(first)) if first else None
            for delivery in claimed:
                lookup = secrets.get(delivery.account_id)
                if lookup is None:
                    lookup = secrets[delivery.account_id] = asyncio.ensure_future(
                        self._secrets(delivery.account_id)
                    )
                self._waiting.append(_Waiting(delivery, lookup, bodies))
            self._start_waiting()  # those handed over while the claim ran may hold the slots
            if free > 0 and claimed and len(claimed) == free:
                continue
            self._wakeup.clear()
            if self._stopping:
                return
            timeout = self.config.poll_interval_s
            if self._due:
                timeout = min(timeout, max(0.0, self._due[0] - self._clock.wall()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _aside(self, task: asyncio.Task[None]) -> None:
        """``task`` is still waiting after ``slow_after_s``: free its slot, if there is room
        aside."""
        self._timers.pop(task, None)
        if not task.done() and len(self._slow) < self.config.slow_max:
            self._slow.add(task)
            self._wakeup.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slow.discard(task)
        timer = self._timers.pop(task, None)
        if timer is not None:
            timer.cancel()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed: %r", task.exception())
        if self._waiting:  # a slot is free: those already leased to this worker go first
            self._start_waiting()
        self._wakeup.set()

    async def _write_deferrals(self, deferrals: Sequence[Deferral]) -> list[None]:
        await self.store.defer_deliveries(self.owner, deferrals)
        return [None] * len(deferrals)

    async def _secrets(self, account_id: str) -> list[str]:
        return [s.secret for s in await self.store.webhook_secrets(account_id)]

    async def _fix_bodies(self, deliveries: Sequence[Delivery]) -> dict[str, str]:
        """Build the bodies of ``deliveries`` and fix them in one store call; a delivery
        whose body could not be built is left out (its attempt builds it again, and says why)."""
        built = await asyncio.gather(
            *(self._build_body(delivery) for delivery in deliveries), return_exceptions=True
        )
        bodies = {
            d.id: body for d, body in zip(deliveries, built, strict=True) if isinstance(body, str)
        }
        return await self.store.set_delivery_bodies(bodies) if bodies else {}

    async def _deliver(
        self,
        delivery: Delivery,
        secrets_lookup: asyncio.Future[list[str]] | None = None,
        bodies_lookup: asyncio.Future[dict[str, str]] | None = None,
        known_secrets: Sequence[str] | None = None,
    ) -> None:
        """Make one attempt at ``delivery`` and record what came of it; ``secrets_lookup`` is
        the account's signing secrets read once for every delivery of the same claim (read
        here when not given), ``bodies_lookup`` the claim's first bodies, fixed together;
        ``known_secrets`` the secrets a handoff read with the delivery."""
        trigger = "replay" if delivery.replay else "scheduled"
        progress = self._progress.get(delivery.job_id)
        if progress and delivery.event_type != PROGRESS_EVENT:
            # a progress webhook of this job on its way: the final one goes after it
            await asyncio.wait(set(progress))
        started_at = self._clock.wall()
        try:
            body = delivery.body
            if body is None and bodies_lookup is not None:  # shared, as the secrets are
                body = (await asyncio.shield(bodies_lookup)).get(delivery.id)
            if body is None:
                body = await self.store.set_delivery_body(
                    delivery.id, await self._build_body(delivery)
                )
            elif delivery.event_type == PROGRESS_EVENT:
                # a retry sends the body fixed at the first attempt; whether its job has ended
                # since is asked again (the builder raises Superseded), the body built unused
                await self._build_body(delivery)
            if known_secrets is not None:
                secrets = list(known_secrets)
            elif secrets_lookup is None:
                secrets = await self._secrets(delivery.account_id)
            else:  # shared: a cancelled attempt must not cancel the others' lookup
                secrets = await asyncio.shield(secrets_lookup)
            if secrets:
                result = await self.sender.send(
                    delivery.url, delivery.id, body.encode(), secrets, timestamp=int(started_at)
                )
            else:
                message = "refused: the account has no webhook signing secret"
                result = SendResult(None, None, message, refused=True)
        except asyncio.CancelledError:
            raise
        except Superseded as exc:
            result = SendResult(None, None, f"not sent: {exc}", refused=True)
        except Exception as exc:
            log.exception("webhook delivery %s could not be attempted", delivery.id)
            result = SendResult(None, None, f"internal error: {type(exc).__name__}")
        if result.not_sent is not None:
            await self._defer(delivery, result.not_sent, result.error or "not sent")
            return
        made = delivery.step + (1 if trigger == "scheduled" else 0)
        now = self._clock.wall()
        decision = decide(
            result,
            made=made,
            replay=delivery.replay,
            schedule=self.config.schedule,
            rng=self._rng,
            now=now,
        )
        attempt = DeliveryAttempt(
            trigger=trigger,
            scheduled_at=delivery.next_attempt_at or started_at,
            started_at=started_at,
            outcome=decision.outcome,
            latency_ms=result.latency_ms,
            status=result.status,
            error=result.error,
            retry_after=result.retry_after,
            next_delay_s=decision.next_delay_s,
            next_attempt_at=decision.next_attempt_at,
        )
        self._observed(decision.outcome, result, now - started_at)  # made, written or not
        await self._records.add(
            AttemptRecord(
                delivery.id,
                self.owner,
                attempt,
                decision.status,
                decision.next_attempt_at,
                decision.outcome == "disabled",
            )
        )
        log.info(
            "webhook %s for job %s: attempt %s %s",
            delivery.id,
            delivery.job_id,
            delivery.attempts + 1,
            decision.outcome,
        )
        if decision.next_attempt_at is not None:
            self._note_due(decision.next_attempt_at)

    def _observed(self, outcome: str, result: SendResult, elapsed_s: float) -> None:
        """Tell ``observe`` of an attempt: timed by the sender's request when one went out,
        else by the attempt itself (a refusal before sending); an observer's fault is logged,
        never the attempt's."""
        if self._observe is None:
            return
        if result.latency_ms is not None:
            elapsed_s = result.latency_ms / 1000
        try:
            self._observe(outcome, status=result.status, duration_s=max(0.0, elapsed_s))
        except Exception:
            log.exception("webhook attempt observer failed")

    async def _defer(self, delivery: Delivery, not_sent: NotSent, why: str) -> None:
        """Give ``delivery`` back unsent, due after ``not_sent.wait_s`` and up to a fifth more
        (so that those turned away together do not come back together), ``why`` its last
        error; its slot is free once that is written."""
        due = self._clock.wall() + not_sent.wait_s * (1 + 0.2 * self._rng.random())
        await self._deferrals.add(Deferral(delivery.id, due, why))
        self.deferred[not_sent.reason] += 1
        # DEBUG: a receiver's outage gives its whole backlog back, once a pause; the counts
        # are in /metrics and each delivery's last_error says why it waits
        log.debug(
            "webhook %s for job %s: not sent (%s), due again in %.1f s",
            delivery.id,
            delivery.job_id,
            not_sent.reason,
            due - self._clock.wall(),
        )
        self._note_due(due)


class _Batch(Generic[T, R]):
    """Items queued in one turn of the loop and written by one store call (``write``, whose
    answer has one value an item, in order); each :meth:`add` resolves to its item's value,
    or fails with the write's error. The write tasks live in ``tasks`` until they end."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        name: str,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._write, self._name, self._tasks = write, name, tasks
        self._queued: list[tuple[T, asyncio.Future[R]]] = []

    def add(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next write; the future resolves once it is written."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[R] = loop.create_future()
        if not self._queued:  # the first of this turn: one write takes all queued by then
            task = loop.create_task(self._flush(), name=self._name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queued.append((item, written))
        return written

    async def _flush(self) -> None:
        batch, self._queued = self._queued, []
        try:
            answers = await self._write([item for item, _ in batch])
        except Exception as exc:
            for _, written in batch:
                if not written.done():
                    written.set_exception(exc)
            return
        for (_, written), value in zip(batch, answers, strict=True):
            if not written.done():
                written.set_result(value)
