"""Locust users of the job API, and the launch-week shape that drives them.

Run only by the orchestrator (``imagerouter loadtest SCENARIO``), which starts the server,
writes the plan (:mod:`loadtests.plan`) and names it in ``$IMAGEROUTER_LOADTEST_PLAN``. Importing
Locust monkey-patches the standard library with gevent, so no test and no server process may
import this module.

Each :class:`ApiClient` submits ``jobs_per_user_s`` jobs a second (a mix of models, sizes and
qualities; some with an ``Idempotency-Key``, a few of those sent twice as a client retry would)
and hands each accepted job to a follower greenlet, so that slow jobs never slow the submits:
the follower polls ``GET /v1/jobs/{id}``, or reads the job's event stream, or leaves it to the
webhook receiver, and cancels a few jobs on the way. Every submit and every outcome is also
written to ``locust-<pid>.jsonl`` in the plan's records folder, so the orchestrator can check
the server's own list of jobs against what the clients were told.

:class:`ScenarioShape` turns the scenario's arrival-rate shape (:mod:`imagerouter.shapes`) into
user counts: ``users = rate(t) / jobs_per_user_s``, peaking at ``--users``.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar

import gevent
from gevent.pool import Group
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.runners import WorkerRunner

from imagerouter.shapes import locust_tick, make_shape
from loadtests.plan import LocustPlan

PLAN = LocustPlan.from_env()
FINAL = frozenset({"completed", "failed", "canceled"})
PROMPTS = (
    "a lighthouse at dusk, oil on canvas",
    "a red fox in fresh snow, 35mm photo",
    "isometric city block at night, neon",
    "a bowl of ramen, studio lighting",
    "watercolor map of an imaginary island",
    "a robot reading in a library, film grain",
)

#: Every follower greenlet of this process (they outlive the user that spawned them).
FOLLOWERS = Group()


class Records:
    """This process's ``locust-<pid>.jsonl``: one JSON line per submit and per outcome."""

    def __init__(self) -> None:
        self._file: Any = None

    def write(self, **entry: Any) -> None:
        """Append one line (opened on first use, after any fork)."""
        if self._file is None:
            path = Path(PLAN.records_dir) / f"locust-{os.getpid()}.jsonl"
            self._file = path.open("a", buffering=1, encoding="utf-8")
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Flush and close."""
        if self._file is not None:
            self._file.close()
            self._file = None


RECORDS = Records()


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def _notify(what: str) -> None:
    """Tell the orchestrator's receiver that the test started or stopped (best effort)."""
    request = urllib.request.Request(f"{PLAN.receiver_url}/{what}", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError:
        pass


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _notify("started")


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _notify("stopped")


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    # The traffic has stopped, not the jobs: each follower ends by itself once its job is
    # final or at its own deadline, so let them finish (bounded by that deadline) before this
    # process quits; killed at once, the jobs still running had no client outcome at all.
    FOLLOWERS.join(timeout=PLAN.follow_timeout_s)
    FOLLOWERS.kill(block=True, timeout=2)
    RECORDS.close()


class ApiClient(FastHttpUser):
    """An API client: submits jobs at a steady pace and follows each one on the side."""

    host = PLAN.host
    wait_time = constant_throughput(PLAN.traffic.jobs_per_user_s)
    concurrency = 64  # the followers share this user's connection pool
    network_timeout = 30.0
    connection_timeout = 10.0
    _count: ClassVar[int] = 0

    def on_start(self) -> None:
        """Seed this user's choices and set its credentials."""
        ApiClient._count += 1
        self.rng = random.Random(f"{PLAN.seed}:{os.getpid()}:{ApiClient._count}")
        self.auth = {"Authorization": f"Bearer {PLAN.api_key}"}

    def _body(self, mode: str) -> dict[str, Any]:
        traffic, rng = PLAN.traffic, self.rng
        body: dict[str, Any]
        if traffic.video_fraction and rng.random() < traffic.video_fraction:
            body = {
                "model": _pick(rng, traffic.video_models),
                "prompt": rng.choice(PROMPTS),
                "metadata": {"loadtest": PLAN.scenario, "follow": mode, "kind": "video"},
            }
        else:
            body = {
                "model": _pick(rng, traffic.models),
                "prompt": rng.choice(PROMPTS),
                "size": _pick(rng, traffic.sizes),
                "quality": _pick(rng, traffic.qualities),
                "metadata": {"loadtest": PLAN.scenario, "follow": mode},
            }
        if mode == "webhook":
            body["webhook_url"] = f"{PLAN.receiver_url}/hooks/{PLAN.scenario}"
        if traffic.routing:
            routing = traffic.routing_of(rng.random())
            if routing is not None:
                body["routing"] = routing
        return body

    @task
    def submit(self) -> None:
        """Submit one job (maybe twice with the same key), then hand it to a follower."""
        traffic, rng = PLAN.traffic, self.rng
        mode = _pick(rng, PLAN.follow)
        body = self._body(mode)
        headers = dict(self.auth)
        key = None
        if rng.random() < traffic.idempotency_fraction:
            key = f"lt-{uuid.uuid4().hex}"
            headers["Idempotency-Key"] = key
        submitted_at = time.time()
        started = time.perf_counter()
        with self.client.post(
            "/v1/jobs", json=body, headers=headers, name="POST /v1/jobs", catch_response=True
        ) as answer:
            submit_ms = (time.perf_counter() - started) * 1000
            job_id = None
            if answer.status_code == 202:
                job_id = (answer.json() or {}).get("id")
            if job_id is None:
                answer.failure(f"{answer.status_code}: {(answer.text or '')[:200]}")
                RECORDS.write(
                    e="submit",
                    id=None,
                    status=answer.status_code,
                    t=submitted_at,
                    ms=round(submit_ms, 3),
                    key=key is not None,
                    follow=mode,
                )
                return
        replayed = None
        if key is not None and rng.random() < traffic.idempotent_retry_fraction:
            replayed = self._resubmit(body, headers, job_id)
        cancel = rng.random() < traffic.cancel_fraction
        RECORDS.write(
            e="submit",
            id=job_id,
            status=202,
            t=submitted_at,
            ms=round(submit_ms, 3),
            key=key is not None,
            replayed=replayed,
            follow=mode,
            cancel=cancel,
            model=body["model"],
        )
        FOLLOWERS.spawn(self._follow, job_id, mode, submitted_at, cancel)

    def _resubmit(self, body: dict[str, Any], headers: dict[str, str], job_id: str) -> bool:
        """Send the same keyed submit again: it must replay the first answer, not make a job."""
        with self.client.post(
            "/v1/jobs",
            json=body,
            headers=headers,
            name="POST /v1/jobs (same Idempotency-Key)",
            catch_response=True,
        ) as again:
            same = again.status_code == 202 and (again.json() or {}).get("id") == job_id
            replayed = again.headers.get("Idempotent-Replayed") == "true"
            if not (same and replayed):
                again.failure(f"not a replay of {job_id}: {again.status_code} {again.text[:200]}")
            return same and replayed

    # --- following one job -------------------------------------------------------------------

    def _follow(self, job_id: str, mode: str, submitted_at: float, cancel: bool) -> None:
        deadline = time.monotonic() + PLAN.follow_timeout_s
        if cancel:
            gevent.sleep(self.rng.uniform(0.0, 1.0))
            self._cancel(job_id)
        if mode == "webhook":
            return  # the orchestrator's receiver records the outcome
        if mode == "sse" and PLAN.sse_path:
            status = self._stream(job_id, deadline)
        else:
            status = self._poll(job_id, deadline)
        e2e_s = time.time() - submitted_at
        RECORDS.write(
            e="final", id=job_id, status=status, t=time.time(), e2e_s=round(e2e_s, 4), follow=mode
        )
        self.environment.events.request.fire(
            request_type="JOB",
            name=f"{status} ({mode})",
            response_time=e2e_s * 1000,
            response_length=0,
            exception=None if status in FINAL else RuntimeError(f"{job_id} {status}"),
            context={},
        )

    def _cancel(self, job_id: str) -> None:
        with self.client.delete(
            f"/v1/jobs/{job_id}",
            headers=self.auth,
            name="DELETE /v1/jobs/[id]",
            catch_response=True,
        ) as answer:
            if answer.status_code in (200, 409):  # 409: it finished first
                answer.success()
            else:
                answer.failure(f"{answer.status_code}: {(answer.text or '')[:200]}")
        RECORDS.write(e="cancel", id=job_id, status=answer.status_code, t=time.time())

    def _poll(self, job_id: str, deadline: float) -> str:
        """Poll until the job is final; its status, or ``lost`` past the deadline."""
        while time.monotonic() < deadline:
            with self.client.get(
                f"/v1/jobs/{job_id}",
                headers=self.auth,
                name="GET /v1/jobs/[id]",
                catch_response=True,
            ) as answer:
                if answer.status_code == 200:
                    status = (answer.json() or {}).get("status")
                    if status in FINAL:
                        return status
                elif answer.status_code == 429:
                    answer.success()  # our own read limit: back off as told
                    gevent.sleep(float(answer.headers.get("Retry-After") or 1))
                    continue
                else:
                    answer.failure(f"{answer.status_code}: {(answer.text or '')[:200]}")
            gevent.sleep(PLAN.traffic.poll_interval_s)
        return "lost"

    def _stream(self, job_id: str, deadline: float) -> str:
        """Read the job's Server-Sent Events until a final status; fall back to polling."""
        assert PLAN.sse_path is not None
        path = PLAN.sse_path.format(id=job_id)
        try:
            with gevent.Timeout(max(1.0, deadline - time.monotonic()), False):
                lines = self.client.iter_lines(
                    path,
                    headers={**self.auth, "Accept": "text/event-stream"},
                    name="GET /v1/jobs/[id]/events",
                )
                for line in lines:
                    if not line.startswith("data:"):
                        continue
                    try:
                        data = json.loads(line[5:].strip())
                    except ValueError:
                        continue
                    status = _status_of(data)
                    if status in FINAL:
                        return status
        except Exception:  # a dropped stream: the poll below still finds the outcome
            pass
        return self._poll(job_id, deadline)


def _status_of(data: Any) -> str | None:
    """A job status from an event's data, whatever its nesting."""
    if not isinstance(data, dict):
        return None
    for holder in (data, data.get("data"), data.get("job")):
        if isinstance(holder, dict) and isinstance(holder.get("status"), str):
            return holder["status"]
    kind = data.get("type")
    if isinstance(kind, str) and kind.startswith("job."):
        return kind.removeprefix("job.")
    return None


class ScenarioShape(LoadTestShape):
    """The scenario's arrival-rate shape as Locust users (peak: ``--users``), then stop."""

    def __init__(self) -> None:
        super().__init__()
        traffic = PLAN.traffic
        self.shape = make_shape(
            traffic.shape,
            peak_per_s=PLAN.users * traffic.jobs_per_user_s,
            duration_s=PLAN.duration_s,
            **traffic.shape_params,
        )

    def tick(self) -> tuple[int, float] | None:
        """``(users, spawn rate)`` for now, or None once the run is over."""
        step = locust_tick(self.shape, self.get_run_time(), PLAN.traffic.jobs_per_user_s)
        if step is None:
            return None
        users, rate = step
        return min(users, PLAN.users), rate
