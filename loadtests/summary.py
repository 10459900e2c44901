"""The numbers of a load-test run, from the system's own record (pure: no I/O but reading files).

:func:`summarize` takes a :class:`RunData` (the jobs and ledger the server lists, the farm's
counters, the orchestrator's samples of the breakers, the clients' records and the webhooks
that arrived) and returns the ``summary.json`` document: jobs and their outcomes (with the
failed jobs that gave up while a candidate could still serve them), failovers by
provider pair, breaker trips and recovery, requests inside a Retry-After window, latency
percentiles, webhook delivery, credits, and the checks every run must pass.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench.common import percentile
from loadtests.scenario import LoadScenario
from loadtests.timeline import expand_providers

__all__ = [
    "RunData",
    "latency_figures",
    "load_records",
    "load_run",
    "locust_stats",
    "save_run",
    "summarize",
]

FINAL = ("completed", "failed", "canceled")
CALLS = ("ok", "error", "canceled")


@dataclass
class RunData:
    """Everything one run left behind, as the orchestrator gathered it."""

    scenario: LoadScenario
    users: int
    workers: int
    #: Wall-clock seconds when Locust started, stopped, and when the drain ended.
    t0: float
    traffic_end: float
    drain_end: float
    jobs: list[dict[str, Any]]
    account: dict[str, Any]
    farm_stats: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    switches: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    locust_dir: Path | None = None
    locust_exit_codes: list[int | None] = field(default_factory=list)
    server_exit_code: int | None = None
    credits_granted: int = 0
    #: The files in the server's local output storage after the drain, as keys (paths under
    #: it); None when the run did not look (another backend, or an older run).
    stored_outputs: list[str] | None = None


#: The files under ``raw/`` that hold each part of :class:`RunData`.
RAW_FILES = {
    "jobs": "jobs.json",
    "account": "account.json",
    "farm_stats": "farm_stats.json",
    "samples": "samples.json",
    "switches": "switches.json",
    "webhooks": "webhooks.json",
}


def save_run(out: Path, data: RunData) -> None:
    """Write ``data`` under ``out/raw`` (``run.json`` plus one file per record)."""
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, file in RAW_FILES.items():
        (raw / file).write_text(json.dumps(getattr(data, name), indent=1, default=str))
    meta = {
        "scenario": data.scenario.model_dump(mode="json"),
        "users": data.users,
        "workers": data.workers,
        "t0": data.t0,
        "traffic_end": data.traffic_end,
        "drain_end": data.drain_end,
        "capabilities": data.capabilities,
        "locust_exit_codes": data.locust_exit_codes,
        "server_exit_code": data.server_exit_code,
        "credits_granted": data.credits_granted,
        "stored_outputs": data.stored_outputs,
    }
    (raw / "run.json").write_text(json.dumps(meta, indent=1))


def load_run(out: Path) -> RunData:
    """The :class:`RunData` a run saved under ``out/raw`` (see :func:`save_run`)."""
    raw = out / "raw"
    meta = json.loads((raw / "run.json").read_text())
    parts = {name: json.loads((raw / file).read_text()) for name, file in RAW_FILES.items()}
    return RunData(
        scenario=LoadScenario.model_validate(meta.pop("scenario")),
        **meta,
        **parts,
        records=load_records(raw),
        locust_dir=out / "locust",
    )


def load_records(folder: Path) -> list[dict[str, Any]]:
    """Every line of every ``locust-*.jsonl`` in ``folder`` (a torn last line is skipped)."""
    records = []
    for path in sorted(folder.glob("locust-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def locust_stats(folder: Path | None) -> dict[str, dict[str, float]]:
    """Locust's final ``locust_stats.csv``, by request name."""
    if folder is None or not (folder / "locust_stats.csv").is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    with (folder / "locust_stats.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):

            def num(key: str, row: dict[str, str] = row) -> float | None:
                try:
                    return float(row[key])
                except (KeyError, ValueError):
                    return None

            out[row["Name"]] = {
                "requests": num("Request Count"),
                "failures": num("Failure Count"),
                "rps": num("Requests/s"),
                "p50_ms": num("50%"),
                "p95_ms": num("95%"),
                "p99_ms": num("99%"),
                "max_ms": num("Max Response Time"),
            }
    return out


def latency_figures(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict:
    """count, p50, p95, p99 and max of ``values`` × ``scale`` (None without values)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    scaled = [v * scale for v in values]
    return {
        "count": len(scaled),
        **{f"p{q}": round(percentile(scaled, q), digits) for q in (50, 95, 99)},
        "max": round(max(scaled), digits),
    }


def _calls(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in job.get("attempts") or [] if a.get("outcome") in CALLS]


#: The reason of the "skipped" attempts a job that gave up while servable ends with.
SERVABLE_SKIP = "servable:"


def _failed_while_servable(jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Failed jobs whose ``error`` says ``failed_while_servable: true`` (a routing defect: a
    candidate could still have served the job when it gave up), by ``reason`` and by servable
    provider. Records from servers older than the flag have no such field and count as not
    servable. The providers come from ``error.servable``, else from the job's closing
    "skipped" attempts whose reason starts ``servable:``."""
    ids: list[str] = []
    reasons: Counter[str] = Counter()
    providers: Counter[str] = Counter()
    for job in jobs:
        error = job.get("error") or {}
        if job.get("status") != "failed" or error.get("failed_while_servable") is not True:
            continue
        ids.append(job["id"])
        reasons[error.get("reason") or "?"] += 1
        servable = error.get("servable") or [
            a["provider"]
            for a in job.get("attempts") or []
            if a.get("outcome") == "skipped"
            and str(a.get("reason") or "").startswith(SERVABLE_SKIP)
        ]
        for name in sorted(set(servable)) or ["?"]:
            providers[name] += 1
    return {
        "count": len(ids),
        "by_reason": dict(reasons.most_common()),
        "by_provider": dict(providers.most_common()),
        "jobs": sorted(ids)[:50],
    }


# --- the sections --------------------------------------------------------------------------------


def _jobs(data: RunData) -> dict[str, Any]:
    jobs = data.jobs
    status = Counter(job["status"] for job in jobs)
    server_ids = {job["id"] for job in jobs}
    submits = [r for r in data.records if r.get("e") == "submit"]
    accepted = {r["id"] for r in submits if r.get("id")}
    refused = Counter(str(r.get("status")) for r in submits if not r.get("id"))
    finals = {r["id"]: r for r in data.records if r.get("e") == "final"}
    by_id = {job["id"]: job for job in jobs}
    disagree = sorted(
        job_id
        for job_id, record in finals.items()
        if record.get("status") in FINAL and by_id.get(job_id, {}).get("status") != record["status"]
    )
    replays = [r.get("replayed") for r in submits if r.get("replayed") is not None]
    cancels = [r for r in data.records if r.get("e") == "cancel"]
    canceled = status.get("canceled", 0)
    settled = len(jobs) - canceled
    by_model: dict[str, Counter[str]] = {}
    for job in jobs:
        by_model.setdefault(job["request"]["model"], Counter())[job["status"]] += 1
    return {
        "submitted": len(jobs),
        "completed": status.get("completed", 0),
        "failed": status.get("failed", 0),
        "canceled": canceled,
        "not_final": sum(n for s, n in status.items() if s not in FINAL),
        "completed_fraction": round(status.get("completed", 0) / settled, 4) if settled else None,
        "lost": sorted(accepted - server_ids),
        "unseen_by_clients": len(server_ids - accepted),
        "client_accepted": len(accepted),
        "client_refused": dict(refused),
        "client_outcomes": dict(Counter(r.get("status") for r in finals.values())),
        "client_server_disagree": disagree,
        "idempotent_retries": {"sent": len(replays), "replayed": sum(1 for r in replays if r)},
        "cancel_requests": {
            "sent": len(cancels),
            "canceled": sum(1 for c in cancels if c.get("status") == 200),
            "already_final": sum(1 for c in cancels if c.get("status") == 409),
        },
        "by_model": {model: dict(counts) for model, counts in sorted(by_model.items())},
        "failure_codes": dict(
            Counter(
                (job.get("error") or {}).get("code", "?")
                for job in jobs
                if job["status"] == "failed"
            )
        ),
        "failed_while_servable": _failed_while_servable(jobs),
    }


def _providers(data: RunData) -> dict[str, Any]:
    served: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    errors: dict[str, Counter[str]] = {}
    skipped: Counter[str] = Counter()
    failovers: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for job in data.jobs:
        if job["status"] == "completed" and job.get("result"):
            served[job["result"].get("provider", "?")] += 1
        for attempt in job.get("attempts") or []:
            if attempt.get("outcome") == "skipped":
                skipped[attempt["provider"]] += 1
        sequence = _calls(job)
        for attempt in sequence:
            calls[attempt["provider"]] += 1
            if attempt["outcome"] == "error":
                kind = attempt.get("error_class") or "?"
                errors.setdefault(attempt["provider"], Counter())[kind] += 1
        for before, after in itertools.pairwise(sequence):
            if before["provider"] != after["provider"]:
                failovers[f"{before['provider']} → {after['provider']}"] += 1
            else:
                retries[before["provider"]] += 1
    return {
        "served": dict(served.most_common()),
        "calls": dict(calls.most_common()),
        "errors": {p: dict(c.most_common()) for p, c in sorted(errors.items())},
        "skipped": dict(skipped.most_common()),
        "failovers": dict(failovers.most_common()),
        "failovers_total": sum(failovers.values()),
        "retries": dict(retries.most_common()),
    }


def _breakers(data: RunData, known: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = sorted({n for s in data.samples for n in s.get("breakers", {})})
    for name in names:
        spans: list[dict[str, Any]] = []
        opened: float | None = None
        trips = 0
        for sample in data.samples:
            state = sample.get("breakers", {}).get(name)
            trips = max(trips, sample.get("trips", {}).get(name, 0))
            if state is None:
                continue
            if state != "closed" and opened is None:
                opened = sample["t"]
            elif state == "closed" and opened is not None:
                spans.append(
                    {
                        "opened_s": opened,
                        "closed_s": sample["t"],
                        "open_for_s": round(sample["t"] - opened, 3),
                    }
                )
                opened = None
        if opened is not None:
            spans.append({"opened_s": opened, "closed_s": None, "open_for_s": None})
        out[name] = {"trips": trips, "open_spans": spans}
    # After each phase that ends inside the run: how long until the provider served again.
    recovery = []
    for phase in data.scenario.reported_phases():
        end = phase.until_s
        if end is None or end >= data.scenario.duration_s:
            continue
        for provider in expand_providers(phase, known):
            back = [
                a["started_at"] + (a.get("latency_ms") or 0) / 1000
                for job in data.jobs
                for a in _calls(job)
                if a["provider"] == provider
                and a["outcome"] == "ok"
                and a["started_at"] >= data.t0 + end
            ]
            recovery.append(
                {
                    "phase": phase.name,
                    "provider": provider,
                    "ended_s": round(end, 3),
                    "serving_again_after_s": round(min(back) - data.t0 - end, 3) if back else None,
                }
            )
    return {"by_provider": out, "recovery": recovery}


def _retry_after(data: RunData) -> dict[str, Any]:
    providers = data.farm_stats.get("providers", {})
    by = {
        name: {
            "inside_retry_after": entry.get("inside_retry_after", 0),
            "inside_retry_after_raw": entry.get("inside_retry_after_raw", 0),
            "retry_after_issued": entry.get("retry_after_issued", 0),
            "answered_429": entry.get("by_status", {}).get("429", 0),
        }
        for name, entry in sorted(providers.items())
    }
    return {
        "inside_retry_after": sum(v["inside_retry_after"] for v in by.values()),
        "inside_retry_after_raw": sum(v["inside_retry_after_raw"] for v in by.values()),
        "retry_after_issued": sum(v["retry_after_issued"] for v in by.values()),
        "by_provider": by,
    }


def _latency(data: RunData) -> dict[str, Any]:
    submits = [r["ms"] for r in data.records if r.get("e") == "submit" and r.get("id")]
    e2e: dict[str, list[float]] = {s: [] for s in FINAL}
    queued: list[float] = []
    for job in data.jobs:
        if job["status"] in FINAL and job.get("finished_at"):
            e2e[job["status"]].append(job["finished_at"] - job["created_at"])
        if job.get("started_at"):
            queued.append(job["started_at"] - job["created_at"])
    observed = [r["e2e_s"] for r in data.records if r.get("e") == "final" and "e2e_s" in r]
    return {
        "submit_ms": {**latency_figures(submits), "source": "clients (Locust users), 202s"},
        "end_to_end_s": {
            status: latency_figures(values) for status, values in e2e.items() if values
        },
        "queue_wait_s": latency_figures(queued),
        "client_observed_end_to_end_s": latency_figures(observed),
    }


def _webhooks(data: RunData) -> dict[str, Any]:
    available = bool(data.capabilities.get("webhooks"))
    wanted = {
        job["id"]: job
        for job in data.jobs
        if (job.get("request") or {}).get("webhook_url") and job["status"] in FINAL
    }
    first: dict[str, float] = {}
    ids = Counter()
    for arrival in data.webhooks:
        if arrival.get("webhook_id"):
            ids[arrival["webhook_id"]] += 1
        job_id = arrival.get("job_id")
        if job_id and arrival.get("type", "") != "job.processing":
            first[job_id] = min(first.get(job_id, math.inf), arrival["arrived_at"])
    latencies = [
        first[job_id] - job["finished_at"]
        for job_id, job in wanted.items()
        if job_id in first and job.get("finished_at")
    ]
    return {
        "available": available,
        "expected": len(wanted),
        "delivered": sum(1 for job_id in wanted if job_id in first),
        "missing": sorted(job_id for job_id in wanted if job_id not in first)[:50],
        "arrivals": len(data.webhooks),
        "redelivered": sum(n - 1 for n in ids.values() if n > 1),
        "invalid_signatures": sum(1 for a in data.webhooks if a.get("signature_valid") is False),
        "unverified": sum(1 for a in data.webhooks if a.get("signature_valid") is None),
        "latency_ms": latency_figures(latencies, scale=1000, digits=1),
    }


#: Where a locally stored output's key starts in its URL: the media route of the HTTP API,
#: spelled here as a client reads it (the load tests import only the public API, so not
#: ``imagerouter.storage.local.MEDIA_PREFIX``; ``tests/core/test_import_rules.py``).
_MEDIA = "/v1/media/"


def _outputs(data: RunData) -> dict[str, Any]:
    """The output files the server kept against the images its completed jobs show: a file
    no result points to (a job that ended without its outputs, and kept them) or an image
    whose file is missing."""
    if data.stored_outputs is None:
        return {"available": False}
    shown: set[str] = set()
    for job in data.jobs:
        if job.get("status") != "completed":
            continue
        for image in (job.get("result") or {}).get("images") or []:
            url = image.get("url") or ""
            if _MEDIA in url:
                shown.add(url.split(_MEDIA, 1)[1].split("?", 1)[0])
    stored = set(data.stored_outputs)
    return {
        "available": True,
        "stored": len(stored),
        "shown": len(shown),
        "without_result": sorted(stored - shown)[:50],
        "missing": sorted(shown - stored)[:50],
        "without_result_count": len(stored - shown),
        "missing_count": len(shown - stored),
    }


def _credits(data: RunData) -> dict[str, Any]:
    ledger = data.account.get("ledger", [])
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in ledger:
        kinds.setdefault(entry["kind"], []).append(entry)
    granted = sum(e["amount"] for e in kinds.get("grant", []))
    debited = -sum(e["amount"] for e in kinds.get("debit", []))
    refunded = sum(e["amount"] for e in kinds.get("refund", []))
    charged = sum(job["credits"]["charged"] for job in data.jobs)
    job_refunds = sum(job["credits"]["refunded"] for job in data.jobs)
    debits_per_job = Counter(e.get("job_id") for e in kinds.get("debit", []))
    refunds_per_job = Counter(e.get("job_id") for e in kinds.get("refund", []))
    problems: list[str] = []
    for job in data.jobs:
        price, back = job["credits"]["price"], job["credits"]["refunded"]
        if job["status"] in ("failed", "canceled") and back != price:
            problems.append(f"{job['id']} {job['status']} but refunded {back} of {price}")
        if job["status"] == "completed" and back:
            problems.append(f"{job['id']} completed yet refunded {back}")
        if debits_per_job.get(job["id"], 0) != 1:
            problems.append(f"{job['id']} has {debits_per_job.get(job['id'], 0)} debits")
        if refunds_per_job.get(job["id"], 0) > 1:
            problems.append(f"{job['id']} refunded {refunds_per_job[job['id']]} times")
    if debited != charged:
        problems.append(f"the ledger debits {debited}, the jobs were charged {charged}")
    if refunded != job_refunds:
        problems.append(f"the ledger refunds {refunded}, the jobs say {job_refunds}")
    expected_balance = granted - debited + refunded
    balance = data.account.get("balance")
    if balance != expected_balance:
        problems.append(f"balance {balance} ≠ granted − debits + refunds = {expected_balance}")
    return {
        "granted": granted,
        "charged": charged,
        "refunded": refunded,
        "net_spent": charged - refunded,
        "debits": len(kinds.get("debit", [])),
        "refunds": len(kinds.get("refund", [])),
        "balance": balance,
        "expected_balance": expected_balance,
        "balanced": not problems,
        "problems": problems[:50],
    }


def _counts(counts: dict[str, int]) -> str:
    """``{"a": 2, "b": 1}`` as ``a 2, b 1``."""
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _calls_within(data: RunData, providers: Sequence[str], start: float, end: float) -> int:
    """Calls the jobs made to ``providers`` from ``start`` to ``end`` s after the run began:
    what a phase of theirs had to act on (none, and the phase tested nothing)."""
    wanted = set(providers)
    return sum(
        1
        for job in data.jobs
        for a in job.get("attempts") or []
        if a["provider"] in wanted
        and a["outcome"] in ("ok", "error", "canceled")
        and start <= a["started_at"] - data.t0 < end
    )


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def _checks(data: RunData, s: dict[str, Any]) -> list[dict[str, Any]]:
    jobs, credits, ra = s["jobs"], s["credits"], s["retry_after"]
    servable = jobs["failed_while_servable"]
    unrefunded = [p for p in credits["problems"] if "refunded" in p and "but" in p]
    mistaken = {code: n for code, n in jobs["client_refused"].items() if code != "429"}
    checks = [
        _check(
            "the server took the submits",
            jobs["client_accepted"] > 0 and not mistaken,
            f"{jobs['client_accepted']} accepted; refused other than by the rate limit: "
            + (", ".join(f"{n} × {code}" for code, n in sorted(mistaken.items())) or "none"),
        ),
        _check(
            "no job lost",
            not jobs["lost"],
            f"{jobs['client_accepted']} accepted by the clients, {len(jobs['lost'])} of them "
            f"missing from the server's {jobs['submitted']}",
        ),
        _check(
            "every job ended",
            jobs["not_final"] == 0,
            f"{jobs['not_final']} still queued or processing after the drain",
        ),
        _check(
            "failed and canceled jobs refunded",
            not unrefunded,
            f"{jobs['failed'] + jobs['canceled']} failed or canceled, "
            f"{len(unrefunded)} without their full refund",
        ),
        _check(
            "credits balance",
            credits["balanced"],
            f"charged {credits['charged']}, refunded {credits['refunded']}, balance "
            f"{credits['balance']} (expected {credits['expected_balance']})",
        ),
        _check(
            "no request inside a Retry-After window",
            ra["inside_retry_after"] == 0,
            f"{ra['inside_retry_after']} (raw {ra['inside_retry_after_raw']}) after "
            f"{ra['retry_after_issued']} Retry-Afters issued",
        ),
        _check(
            "clients and server agree",
            not jobs["client_server_disagree"],
            f"{len(jobs['client_server_disagree'])} jobs whose final status differs",
        ),
        _check(
            "no job failed while a provider could serve it",
            servable["count"] == 0,
            f"{servable['count']} failed jobs gave up while a candidate provider could still "
            "serve them"
            + (
                f" (reasons: {_counts(servable['by_reason'])}; servable: "
                f"{_counts(servable['by_provider'])})"
                if servable["count"]
                else ""
            ),
        ),
        _check(
            "idempotent retries replayed",
            jobs["idempotent_retries"]["sent"] == jobs["idempotent_retries"]["replayed"],
            f"{jobs['idempotent_retries']['replayed']} of "
            f"{jobs['idempotent_retries']['sent']} replayed the first answer",
        ),
    ]
    expect, fraction = data.scenario.expect, jobs["completed_fraction"]
    if expect.min_completed_fraction is not None:
        checks.append(
            _check(
                f"completed ≥ {expect.min_completed_fraction:.0%}",
                fraction is not None and fraction >= expect.min_completed_fraction,
                f"{fraction if fraction is None else f'{fraction:.1%}'} of the jobs not canceled",
            )
        )
    if expect.max_completed_fraction is not None:
        checks.append(
            _check(
                f"completed ≤ {expect.max_completed_fraction:.0%}",
                fraction is not None and fraction <= expect.max_completed_fraction,
                f"{fraction if fraction is None else f'{fraction:.1%}'} of the jobs not canceled",
            )
        )
    least = expect.min_retry_after_issued
    if least is not None:
        issued = ra["retry_after_issued"]
        checks.append(
            _check(
                f"Retry-After windows exercised (≥ {least})",
                issued >= least,
                f"{issued} Retry-Afters issued by the farm"
                + (
                    ""
                    if issued >= least
                    else f": the load stayed under the limits ({data.users} users; the "
                    f"scenario's default is {data.scenario.users})"
                ),
            )
        )
    outputs = s["outputs"]
    if outputs["available"]:
        checks.append(
            _check(
                "stored outputs match the results",
                outputs["without_result_count"] == 0 and outputs["missing_count"] == 0,
                f"{outputs['stored']} files for the {outputs['shown']} images of completed jobs: "
                f"{outputs['without_result_count']} without a result, "
                f"{outputs['missing_count']} missing",
            )
        )
    hooks = s["webhooks"]
    if hooks["available"] and hooks["expected"]:
        checks.append(
            _check(
                "webhooks delivered and signed",
                hooks["delivered"] == hooks["expected"] and hooks["invalid_signatures"] == 0,
                f"{hooks['delivered']} of {hooks['expected']} delivered, "
                f"{hooks['invalid_signatures']} bad signatures",
            )
        )
    return checks


def summarize(data: RunData) -> dict[str, Any]:
    """The ``summary.json`` document of a run."""
    scenario = data.scenario
    known = sorted(data.farm_stats.get("providers", {}))
    summary: dict[str, Any] = {
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "duration_s": scenario.duration_s,
            "users": data.users,
            "locust_workers": data.workers,
            "shape": scenario.traffic.shape,
            "jobs_per_user_s": scenario.traffic.jobs_per_user_s,
            "phases": [
                {
                    "name": name,
                    "providers": providers,
                    "start_s": round(start, 3),
                    "end_s": round(end, 3),
                    "holds_through_drain": through,
                    "calls": _calls_within(data, providers, start, math.inf if through else end),
                }
                for p, (name, start, end) in zip(
                    scenario.reported_phases(), scenario.phase_spans(), strict=True
                )
                for providers, through in [
                    (
                        expand_providers(p, known) if known else p.providers,
                        p.until_s is None or p.until_s >= scenario.duration_s,
                    )
                ]
            ],
        },
        "run": {
            "started_at": data.t0,
            "traffic_s": round(data.traffic_end - data.t0, 3),
            "drain_s": round(data.drain_end - data.traffic_end, 3),
            "locust_exit_codes": data.locust_exit_codes,
            "server_exit_code": data.server_exit_code,
            "follow_modes_unavailable": data.capabilities.get("unavailable", []),
            "farm_switches": data.switches,
        },
        "jobs": _jobs(data),
        "providers": _providers(data),
        "breakers": _breakers(data, known),
        "retry_after": _retry_after(data),
        "latency": _latency(data),
        "webhooks": _webhooks(data),
        "outputs": _outputs(data),
        "credits": _credits(data),
        "farm": {
            name: {
                "requests": e.get("requests", 0),
                "generations": e.get("generations", 0),
                "by_status": e.get("by_status", {}),
            }
            for name, e in sorted(data.farm_stats.get("providers", {}).items())
        },
        "locust": locust_stats(data.locust_dir),
    }
    summary["checks"] = _checks(data, summary)
    summary["ok"] = all(check["ok"] for check in summary["checks"])
    return summary


def throughput_series(values: Iterable[float], t0: float, bin_s: float, end_s: float) -> list[int]:
    """How many of ``values`` (wall times) fall in each ``bin_s`` bin from ``t0`` to ``end_s``."""
    bins = [0] * max(1, math.ceil(end_s / bin_s))
    for value in values:
        index = int((value - t0) // bin_s)
        if 0 <= index < len(bins):
            bins[index] += 1
    return bins
