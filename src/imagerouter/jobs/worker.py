"""The worker pool: N asyncio tasks that run queued jobs under leases.

* A dispatcher leases as many queued jobs as there are idle workers, in one store call, when
  woken by a submit or every ``poll_interval_s`` (for jobs from other processes).
* A heartbeat renews every lease this pool holds in one store call; a job whose lease was lost
  (canceled by its client, or taken over after expiring) has its task cancelled.
* A sweeper re-queues jobs whose lease expired (their process was killed) at start and then
  every ``sweep_interval_s``, and forgets expired idempotency keys.
* On :meth:`WorkerPool.aclose` the pool stops leasing, lets running jobs finish for
  ``shutdown_grace_s``, then cancels the rest and hands them back to the queue.

A job's final state is written by the store only while this pool still holds its lease, so a
job never completes twice and a failed job is refunded once. With an ``outputs`` hook (output
storage), a provider's images are re-hosted as the router's ``accept`` step, before the call
counts as a success: an output the provider got wrong (its URL fails, its bytes are no image)
is that provider's failure and the job goes on to another; if the storage itself cannot write,
the job fails (and is refunded) with code ``output_storage_failed``. Outputs stored for a run
that does not complete the job are removed once the job is known to have ended otherwise
(failed or canceled, so that no later run writes the same keys): none is left behind that no
result points to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.errors import (
    ImageRouterError,
    NoProviderAvailable,
    OutputUnusable,
    ProviderError,
)
from imagerouter.generation import ImageRequest, ProviderOutput
from imagerouter.jobs.errors import StoreUnavailable
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.progress import ProgressRecorder
from imagerouter.jobs.store import IdempotencyStore, JobQueue
from imagerouter.jobs.types import Job
from imagerouter.lifecycle import AsyncResource
from imagerouter.logs import job_context
from imagerouter.router import Router

__all__ = ["OutputHook", "WorkerConfig", "WorkerPool", "WorkerStore", "error_body"]

log = logging.getLogger(__name__)

CancelReason = Literal["client", "lost", "shutdown"]


class OutputHook(Protocol):
    """Re-hosts a finished job's outputs (the server's
    :class:`~imagerouter.storage.OutputStore`)."""

    async def __call__(
        self,
        job: Job,
        result: dict[str, Any],
        started: list[str],
        time_left_s: float | None = None,
    ) -> dict[str, Any]:
        """The result to store, its outputs re-hosted; each output's key goes to ``started``
        as its write begins. Downloads end within ``time_left_s`` (the job's deadline)."""
        ...

    async def discard(self, keys: list[str]) -> None:
        """Remove the outputs stored under ``keys``."""
        ...


class WorkerStore(JobQueue, IdempotencyStore, Protocol):
    """What the pool needs of the store: the job queue with its leases, and the purge of
    expired idempotency keys that its sweeper runs."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How the pool runs jobs.

    Attributes:
        workers: jobs run at once (0: the pool runs nothing; submits only queue).
        lease_s: how long a lease lasts without a heartbeat.
        heartbeat_s: how often leases are renewed (well under ``lease_s``).
        sweep_interval_s: how often expired leases are re-queued.
        poll_interval_s: how often the queue is read when nothing woke the pool.
        shutdown_grace_s: how long running jobs may finish after stop.
        max_runs: a job leased this many times without finishing fails (a poison job).
        progress_interval_s: least time between a job's ``job.progress`` events (None: the
            providers' queue reports are not stored).
        progress_delay_s: how long a job's first ``job.progress`` event waits: a job over
            sooner (its provider answered at once) writes none, its final event says it all.
    """

    workers: int = 16
    lease_s: float = 30.0
    heartbeat_s: float = 10.0
    sweep_interval_s: float = 5.0
    poll_interval_s: float = 1.0
    shutdown_grace_s: float = 10.0
    max_runs: int = 5
    progress_interval_s: float | None = 1.0
    progress_delay_s: float = 0.5


def error_body(exc: BaseException) -> dict[str, Any]:
    """A failed job's ``error``: machine code, message, error class, and the last provider."""
    if isinstance(exc, ImageRouterError):
        body: dict[str, Any] = {
            "code": exc.code,
            "message": str(exc),
            "error_class": type(exc).__name__,
        }
        if isinstance(exc, ProviderError):
            body["provider"] = exc.provider or None
        if isinstance(exc, NoProviderAvailable):
            body["reason"] = exc.reason
            body["failed_while_servable"] = exc.failed_while_servable
            if exc.servable:
                body["servable"] = exc.servable
        return body
    return {"code": "internal_error", "message": "internal error", "error_class": "Exception"}


def _resolve(ended: asyncio.Future[None], _task: asyncio.Task[None]) -> None:
    if not ended.done():  # a worker cancelled meanwhile cancelled its wait
        ended.set_result(None)


def _attempts(exc: BaseException) -> list[dict[str, Any]]:
    attempts = getattr(exc, "attempts", None) or []
    return [a if isinstance(a, dict) else a.as_dict() for a in attempts]


class WorkerPool(AsyncResource):
    """Runs queued jobs through ``router`` with ``config.workers`` tasks; see module doc."""

    def __init__(
        self,
        store: WorkerStore,
        router: Router,
        config: WorkerConfig,
        *,
        owner: str | None = None,
        clock: Clock | None = None,
        outputs: OutputHook | None = None,
    ) -> None:
        self.store, self.router, self.config = store, router, config
        self._outputs = outputs
        #: This pool's lease owner id: unique per process start.
        self.owner = owner or new_id("wrk", 12)
        self._clock = clock or MonotonicClock()
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._idle = config.workers
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leased: set[str] = set()  # leased, waiting for a free worker
        self._cancel_reasons: dict[str, CancelReason] = {}
        #: The attempts of runs a shutdown stopped, until their jobs are handed back.
        self._stopped_attempts: dict[str, list[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        """Jobs being run right now."""
        return len(self._running)

    @property
    def accepting(self) -> bool:
        """True between start and aclose."""
        return bool(self._tasks) and not self._stopping

    async def start(self) -> None:
        """Re-queue expired leases, then start the workers, dispatcher, heartbeat, sweeper."""
        await self.store.requeue_expired()
        if self.config.workers <= 0:
            return
        spawn = asyncio.get_running_loop().create_task
        workers = range(self.config.workers)
        self._tasks = [spawn(self._worker(), name=f"worker-{i}") for i in workers]
        self._dispatcher = spawn(self._dispatch(), name="dispatcher")
        self._tasks += [
            self._dispatcher,
            spawn(self._heartbeat(), name="heartbeat"),
            spawn(self._sweep(), name="sweeper"),
        ]

    def wake(self) -> None:
        """Tell the dispatcher that there are new queued jobs."""
        self._wakeup.set()

    def cancel_local(self, job_id: str, reason: CancelReason = "client") -> bool:
        """Cancel the task running ``job_id`` in this process, if any."""
        task = self._running.get(job_id)
        if task is None or task.done():
            return False
        self._cancel_reasons[job_id] = reason
        task.cancel()
        return True

    async def aclose(self) -> None:
        """Stop leasing; let running jobs finish within the grace; hand the rest back."""
        self._stopping = True
        self._wakeup.set()
        if self._dispatcher is not None:  # let an in-flight claim land before draining
            await self._dispatcher
            self._dispatcher = None
        handed_back = 0
        while not self._queue.empty():  # leased, not started: straight back to the queue
            job = self._queue.get_nowait()
            self._leased.discard(job.id)
            await self.store.release_job(job.id, self.owner, "shutdown")
            handed_back += 1
        running = list(self._running.values())
        if running:
            log.info(
                "stopping: %d jobs running, %.3g s to finish before they are handed back",
                len(running),
                self.config.shutdown_grace_s,
            )
            _, pending = await asyncio.wait(running, timeout=self.config.shutdown_grace_s)
            for job_id, task in list(self._running.items()):
                if task in pending:
                    self.cancel_local(job_id, "shutdown")
            if pending:
                await asyncio.wait(pending)
            handed_back += len(pending)
        if handed_back:  # another replica (or this one restarted) runs them again
            log.warning("stopped: %d jobs handed back to the queue", handed_back)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatcher = None
        self._tasks = []

    # --- the tasks -----------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while not self._stopping:
            free = self._idle - self._queue.qsize()
            jobs: list[Job] = []
            if free > 0:
                try:
                    jobs = await self.store.claim_jobs(self.owner, free, self.config.lease_s)
                except StoreUnavailable as exc:  # expected while it lasts: no traceback
                    log.warning("claiming jobs waits for the store: %s", exc)
                except Exception:
                    log.exception("claiming jobs failed")
            for job in jobs:
                self._leased.add(job.id)
                self._queue.put_nowait(job)
            if free > 0 and len(jobs) == free:
                continue  # maybe more are waiting
            self._wakeup.clear()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.config.poll_interval_s)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()  # once: on 3.11 each call asks the kernel for the pid
        while True:
            job = await self._queue.get()
            self._leased.discard(job.id)
            self._idle -= 1
            task = loop.create_task(self._execute(job), name=job.id)
            self._running[job.id] = task
            # waits for the job's task without being it: cancelling this worker leaves the job
            # running, as asyncio.wait does, without its set, waiter and callbacks to remove
            ended = loop.create_future()
            task.add_done_callback(partial(_resolve, ended))
            try:
                await ended
                if task.cancelled():
                    if self._cancel_reasons.get(job.id) == "shutdown":
                        attempts = self._stopped_attempts.pop(job.id, ())
                        await self.store.release_job(job.id, self.owner, "shutdown", attempts)
                elif task.exception() is not None:  # its lease expires; the sweeper re-queues it
                    log.error("job %s: %r", job.id, task.exception())
            finally:
                self._running.pop(job.id, None)
                self._cancel_reasons.pop(job.id, None)
                self._stopped_attempts.pop(job.id, None)
                self._idle += 1
                self._wakeup.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            ids = [*self._running, *self._leased]
            if not ids:
                continue
            try:
                held = await self.store.renew_leases(self.owner, ids, self.config.lease_s)
            except StoreUnavailable as exc:
                log.warning("renewing leases waits for the store: %s", exc)
                continue
            except Exception:
                log.exception("renewing leases failed")
                continue
            for job_id in ids:
                if job_id not in held:
                    self.cancel_local(job_id, "lost")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                if await self.store.requeue_expired():
                    self.wake()
                await self.store.purge_idempotency()
            except StoreUnavailable as exc:
                log.warning("sweeping expired leases waits for the store: %s", exc)
            except Exception:
                log.exception("sweeping expired leases failed")

    # --- one job -------------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        """Run one leased job to its final state (or to cancellation); every log line written
        meanwhile, by this task or the provider calls it makes, carries the job's id."""
        with job_context(job.id):
            await self._run(job)

    async def _write_end(self, write: Callable[..., Awaitable[bool]], *args: Any) -> bool:
        """Write a job's end (``write(*args)``: complete or fail it); while the store is
        unavailable (a restart, a full disk) try again, for up to ``lease_s``, so a short
        outage does not send the job to a provider again. A retry after a commit that was
        in fact made changes nothing: the end is written once, under the lease."""
        delay_s, deadline = 0.1, self._clock.now() + self.config.lease_s
        while True:
            try:
                return await write(*args)
            except StoreUnavailable as exc:
                if self._clock.now() + delay_s > deadline:
                    raise
                log.info("writing a job's end waits for the store: %s", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)

    async def _run(self, job: Job) -> None:
        remaining = job.deadline_at - self._clock.wall()
        if remaining <= 0:
            await self._write_end(
                self.store.fail_job,
                job.id,
                self.owner,
                {"code": "deadline_exceeded", "message": "the job's deadline passed"},
                [],
            )
            return
        if job.runs > self.config.max_runs:
            message = f"the job was started {job.runs - 1} times without finishing"
            await self._write_end(
                self.store.fail_job,
                job.id,
                self.owner,
                {"code": "too_many_runs", "message": message},
                [],
            )
            return
        interval = self.config.progress_interval_s
        progress = None
        if interval is not None:
            progress = ProgressRecorder(
                self.store,
                job.id,
                self.owner,
                min_interval_s=interval,
                first_delay_s=self.config.progress_delay_s,
                clock=self._clock,
            )
        started: list[str] = []  # the keys of outputs this run stored, kept or not
        stored: dict[str, Any] = {}  # the accepted output's images and storage record
        accept = None
        if self._outputs is not None:
            accept = partial(self._store_outputs, job, started, stored)
        try:
            request = ImageRequest.model_validate(job.request)
            try:
                result = await self.router.generate(
                    request, deadline_s=remaining, on_progress=progress, accept=accept
                )
            finally:
                if progress is not None:
                    await progress.aclose()
        except ImageRouterError as exc:
            written = await self._write_end(
                self.store.fail_job, job.id, self.owner, error_body(exc), _attempts(exc)
            )
            log.info("job %s failed (%s); written=%s", job.id, exc.code, written)
            await self._drop_outputs(job, started, ended=written)
            return
        except asyncio.CancelledError as cancelled:
            await self._record_canceled(job, cancelled)
            await self._drop_on_cancel(job, started)
            raise
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            written = await self._write_end(
                self.store.fail_job, job.id, self.owner, error_body(exc), []
            )
            await self._drop_outputs(job, started, ended=written)
            return
        if stored:
            body = result.model_dump(mode="json", exclude={"attempts", "images"}) | stored
        else:
            body = result.model_dump(mode="json", exclude={"attempts"})
        try:
            completed = await self._write_end(
                self.store.complete_job, job.id, self.owner, body, result.attempts
            )
        except asyncio.CancelledError:
            await self._drop_on_cancel(job, started)
            raise
        if not completed:
            await self._drop_outputs(job, started)

    async def _drop_on_cancel(self, job: Job, started: list[str]) -> None:
        """A cancelled run's stored outputs: removed when its client canceled the job (or as
        the store shows it ended), kept when a shutdown hands the job back (its next run
        writes the same keys). Shielded: the cancellation must not stop the removal."""
        reason = self._cancel_reasons.get(job.id)
        if started and reason != "shutdown":
            await asyncio.shield(self._drop_outputs(job, started, ended=reason == "client"))

    async def _store_outputs(
        self,
        job: Job,
        started: list[str],
        stored: dict[str, Any],
        output: ProviderOutput,
        time_left_s: float,
    ) -> None:
        """The router's ``accept``: re-host ``output``'s images (downloads within the
        ``time_left_s`` of the job's deadline), their URLs and storage record into
        ``stored``. An output the provider got wrong (OutputUnusable: the job goes on to
        another provider) has what of it was stored removed at once; on any other end the
        keys stay in ``started`` for the job's own clean-up."""
        assert self._outputs is not None
        images = [image.model_dump(mode="json") for image in output.images]
        keys: list[str] = []
        try:
            hosted = await self._outputs(job, {"images": images}, keys, time_left_s)
        except OutputUnusable as exc:
            log.warning("job %s: its provider's output could not be used: %s", job.id, exc)
            if keys:
                await self._discard(job, keys)
            raise
        except BaseException:
            started.extend(keys)
            raise
        started.extend(keys)
        stored.clear()
        stored.update(hosted)

    async def _record_canceled(self, job: Job, cancelled: asyncio.CancelledError) -> None:
        """A cancel stopped the job's provider calls: keep the attempts they made (the one
        abandoned in flight among them), so that the job shows every call. A shutdown's go
        back with the job, in the transaction that hands it back (kept here until then); a
        client's cancel's are written if the job was canceled at this run. Best effort: a
        failure is logged."""
        attempts = getattr(cancelled, "attempts", None)
        if not attempts:
            return
        rows = [attempt.as_dict() for attempt in attempts]
        if self._cancel_reasons.get(job.id) == "shutdown":
            self._stopped_attempts[job.id] = rows
            return
        try:
            await asyncio.shield(self.store.record_canceled_attempts(job.id, job.runs, rows))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job %s: the attempts of its canceled run were not kept: %s", job.id, exc)

    async def _discard(self, job: Job, keys: list[str]) -> bool:
        """Remove outputs stored under ``keys``; best effort: a failure is logged (False)."""
        assert self._outputs is not None
        try:
            await self._outputs.discard(keys)
        except Exception as exc:
            log.warning(
                "job %s: its %d stored outputs could not be removed: %s", job.id, len(keys), exc
            )
            return False
        return True

    async def _drop_outputs(self, job: Job, keys: list[str], *, ended: bool = False) -> None:
        """Remove the outputs this run stored (``keys``) when the job has ended without them:
        ``ended`` when this process knows it did (it failed the job, or its client canceled
        it), else as the store shows the job now. A job handed back to the queue keeps them:
        its next run writes the same keys. Best effort: a failure is logged."""
        if not keys or self._outputs is None:
            return
        if not ended:
            try:
                now = await self.store.get_job(job.account_id, job.id, with_attempts=False)
            except Exception as exc:
                log.warning("job %s: its stored outputs were kept: %s", job.id, exc)
                return
            if now is None or not now.final or now.status == "completed":
                return
        if await self._discard(job, keys):
            log.info("job %s ended without its outputs; removed %d", job.id, len(keys))
