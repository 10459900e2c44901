"""Steady load for the fault tests and the books it must balance afterwards.

:class:`Load` submits jobs at a steady pace through a list of servers and keeps every answer:
the ids of the accepted jobs (202), the documented refusals (503 with ``Retry-After`` and a
code of :data:`UNAVAILABLE_CODES`) and anything else (a 500, a 503 without ``Retry-After``),
which every fault test requires to be none. Half of the submits carry an ``Idempotency-Key``
and, on a 503, are retried after ``Retry-After`` as a careful client would; the other half
are plain and give up on a 503.

:func:`books` reads the totals that must hold afterwards from the database (any store: the
SQL of :data:`imagerouter.jobs.rules.AUDIT_TOTALS` plus two counts) and :meth:`Load.report`
prints the line each test ends with::

    faults pg-restart: accepted=N ended=N lost=0 charged_twice=0 5xx_other=0 503s=K
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from imagerouter.jobs.rules import AUDIT_BY_STATUS, AUDIT_TOTALS
from tests.polling import eventually

__all__ = ["BODY", "UNAVAILABLE_CODES", "Books", "Load", "books"]

BODY = {"model": "gpt-image-2", "prompt": "a lighthouse"}
#: The machine codes a 503 may carry while a part under the router is down.
UNAVAILABLE_CODES = frozenset({"store_unavailable", "storage_full"})
#: SQL beyond the audit's: jobs debited more than once, the ids of the jobs that ended.
CHARGED_TWICE = (
    "SELECT count(*) FROM (SELECT job_id FROM ledger WHERE kind = 'debit' "
    "GROUP BY job_id HAVING count(*) > 1) t"
)
ENDED_IDS = "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'canceled')"
ALL_IDS = "SELECT id FROM jobs"
RERUN = "SELECT count(*) FROM jobs WHERE runs > 1"

#: ``fetch(sql)``: the rows of a query (tuples or records), on whatever database.
Fetch = Callable[[str], Awaitable[Sequence[Sequence[Any]]]]


@dataclass
class Books:
    """What the database says after a run."""

    totals: dict[str, int]
    by_status: dict[str, int]
    charged_twice: int
    ended: set[str]
    stored: set[str]
    #: Jobs started more than once (a lease taken over, or an end that could not be written).
    reruns: int = 0

    def assert_balanced(self) -> None:
        """Every stored job ended once, with one debit, a refund only if it failed, and the
        balances agree with the ledger."""
        t = self.totals
        assert self.stored == self.ended, f"jobs not ended: {sorted(self.stored - self.ended)}"
        assert self.charged_twice == 0
        assert t["jobs_with_two_final_events"] == 0
        assert t["final_events"] == t["jobs"] == t["debits"]
        assert t["refunds"] == t["refundable_jobs"]
        assert t["balances"] == t["ledger_sum"]


async def books(fetch: Fetch) -> Books:
    """The totals of the database ``fetch`` reads."""
    totals = {}
    for name, sql in AUDIT_TOTALS.items():
        totals[name] = int((await fetch(sql))[0][0])
    by_status = {row[0]: int(row[1]) for row in await fetch(AUDIT_BY_STATUS)}
    return Books(
        totals,
        by_status,
        int((await fetch(CHARGED_TWICE))[0][0]),
        {row[0] for row in await fetch(ENDED_IDS)},
        {row[0] for row in await fetch(ALL_IDS)},
        int((await fetch(RERUN))[0][0]),
    )


async def settled_books(fetch: Fetch, timeout_s: float = 60.0) -> Books:
    """The books once every stored job has ended (at least one stored), waiting up to
    ``timeout_s``."""

    async def settled() -> Books | None:
        found = await books(fetch)
        if not found.stored or found.stored != found.ended:
            return None
        # the totals were read before the ids: a job that ended in between left them short,
        # so the books count only once a second reading, every job ended, says the same
        again = await books(fetch)
        return again if again == found else None

    return await eventually(settled, timeout_s=timeout_s, what="every stored job to end")


@dataclass
class Load:
    """``total`` submits, one every ``interval_s``, round-robin over ``urls`` (see the module
    doc). ``timeout_s`` bounds each request; a connection error or timeout moves a keyed
    submit on to the next server (as a load balancer would) and is counted."""

    urls: list[str]
    token: str
    total: int
    interval_s: float = 0.02
    timeout_s: float = 5.0
    body: dict[str, Any] = field(default_factory=lambda: dict(BODY))
    #: The body of submit ``n``, when they differ (else ``body``).
    bodies: Callable[[int], dict[str, Any]] | None = None
    #: Attempts of a keyed submit before it gives up.
    tries: int = 30
    accepted: set[str] = field(default_factory=set)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Answers no fault may cause: (status, body) of every 5xx but a documented 503.
    bad: list[tuple[int, str]] = field(default_factory=list)
    connection_errors: int = 0
    #: Keyed submits never accepted in ``tries`` attempts.
    gave_up: int = 0

    @property
    def unavailable(self) -> int:
        """503s answered with ``Retry-After`` and a documented code."""
        return sum(self.codes[code] for code in UNAVAILABLE_CODES)

    async def run(self) -> None:
        """Offer every submit, at the pace, and wait for all their answers."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def offer(n: int) -> None:
                await asyncio.sleep(n * self.interval_s)
                await self._submit(session, n)

            await asyncio.gather(*(offer(n) for n in range(self.total)))

    async def _submit(self, session: aiohttp.ClientSession, n: int) -> None:
        keyed = n % 2 == 0
        headers = {"Authorization": f"Bearer {self.token}"}
        if keyed:
            headers["Idempotency-Key"] = f"load-{n}"
        for attempt in range(self.tries if keyed else 1):
            url = self.urls[(n // 2 + attempt) % len(self.urls)]
            try:
                body = self.body if self.bodies is None else self.bodies(n)
                async with session.post(f"{url}/v1/jobs", json=body, headers=headers) as r:
                    status, text = r.status, await r.text()
                    retry_after = r.headers.get("Retry-After")
                    doc = await r.json() if r.content_type == "application/json" else {}
            except (TimeoutError, aiohttp.ClientConnectionError):
                self.connection_errors += 1
                await asyncio.sleep(0.1)
                continue
            self.statuses[status] += 1
            if status == 202:
                self.accepted.add(doc["id"])
                return
            code = (doc.get("error") or {}).get("code", "")
            if status == 503 and code in UNAVAILABLE_CODES and retry_after:
                self.codes[code] += 1
                await asyncio.sleep(min(float(retry_after), 1.0))
                continue
            if status == 409 and code == "idempotency_key_in_flight":
                await asyncio.sleep(0.2)
                continue
            if status >= 500:
                self.bad.append((status, text[:300]))
            else:
                self.codes[code] += 1
            return
        if keyed:
            self.gave_up += 1

    def report(self, name: str, found: Books) -> str:
        """Print (and return) the test's line of counts."""
        lost = len(self.accepted - found.ended)
        line = (
            f"faults {name}: accepted={len(self.accepted)} ended={len(found.ended)} "
            f"lost={lost} charged_twice={found.charged_twice} 5xx_other={len(self.bad)} "
            f"503s={self.unavailable} statuses={dict(sorted(self.statuses.items()))} "
            f"connection_errors={self.connection_errors} reruns={found.reruns}"
        )
        print(line)
        return line

    def assert_clean(self, found: Books) -> None:
        """No 5xx but documented 503s; every accepted job stored and ended; the books
        balance (:meth:`Books.assert_balanced`)."""
        assert self.bad == [], f"5xx beyond the documented 503s: {self.bad[:5]}"
        assert self.accepted <= found.stored, "a 202 for a job that was not stored"
        assert not self.accepted - found.ended, "accepted jobs that never ended"
        found.assert_balanced()
