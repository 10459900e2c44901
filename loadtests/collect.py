"""Reading the system's own record of a run: the server's API and the farm's control API.

Everything the summary counts comes from here, not from Locust: the jobs the server lists
(``GET /v1/jobs``, every page) with their attempts (``GET /v1/jobs/{id}``), the account's
balance and whole ledger (``GET /v1/account``, every page), the routers' provider states
(``GET /v1/providers``) and the farm's counters (``GET /_farm/stats``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

__all__ = ["ApiReader", "FarmReader"]


class ApiReader:
    """The job API, read with the load test's account key."""

    def __init__(self, session: aiohttp.ClientSession, url: str, api_key: str) -> None:
        self.session, self.url = session, url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` as JSON; raises for a status other than 200."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.session.get(
            f"{self.url}{path}", params=query, headers=self.headers
        ) as answer:
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: {answer.status} {await answer.text()}")
            return await answer.json()

    async def active_jobs(self) -> int:
        """Jobs queued or processing (counted up to one page of each: enough to say "some")."""
        total = 0
        for status in ("queued", "processing"):
            page = await self.get("/v1/jobs", status=status, limit=100)
            total += len(page["data"])
        return total

    async def all_jobs(self) -> list[dict[str, Any]]:
        """Every job of the account, following ``next_cursor`` to the last page."""
        jobs: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.get("/v1/jobs", limit=100, cursor=cursor)
            jobs.extend(page["data"])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return jobs

    async def job_details(self, ids: list[str], concurrency: int = 16) -> list[dict[str, Any]]:
        """``GET /v1/jobs/{id}`` (with attempts) for every id, a few at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(job_id: str) -> dict[str, Any]:
            async with gate:
                return await self.get(f"/v1/jobs/{job_id}")

        return list(await asyncio.gather(*(one(job_id) for job_id in ids)))

    async def account(self) -> dict[str, Any]:
        """The account with its whole ledger (every page), newest entry first."""
        first = await self.get("/v1/account", limit=500)
        ledger = list(first["ledger"])
        cursor = first.get("next_cursor")
        while cursor:
            page = await self.get("/v1/account", limit=500, cursor=cursor)
            ledger.extend(page["ledger"])
            cursor = page.get("next_cursor")
        return {**first, "ledger": ledger, "next_cursor": None}

    async def providers(self) -> list[dict[str, Any]]:
        """``GET /v1/providers``: breaker, cooldown and health per provider instance."""
        return (await self.get("/v1/providers"))["data"]

    async def routes(self) -> set[str]:
        """The paths the server's OpenAPI document lists."""
        async with self.session.get(f"{self.url}/openapi.json") as answer:
            if answer.status != 200:
                return set()
            return set((await answer.json()).get("paths", {}))

    async def metrics_text(self) -> str | None:
        """``GET /metrics`` as text, when the server has it."""
        try:
            async with self.session.get(f"{self.url}/metrics", headers=self.headers) as answer:
                return await answer.text() if answer.status == 200 else None
        except aiohttp.ClientError:
            return None


class FarmReader:
    """The mock farm's control API."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url.rstrip("/")

    async def providers(self) -> dict[str, Any]:
        """``GET /_farm/providers``."""
        async with self.session.get(f"{self.url}/_farm/providers") as answer:
            answer.raise_for_status()
            return await answer.json()

    async def stats(self) -> dict[str, Any]:
        """``GET /_farm/stats``."""
        async with self.session.get(f"{self.url}/_farm/stats") as answer:
            answer.raise_for_status()
            return await answer.json()

    async def reset(self) -> None:
        """``POST /_farm/reset``: zero the counters, restart the clock."""
        async with self.session.post(f"{self.url}/_farm/reset") as answer:
            answer.raise_for_status()

    async def set_faults(self, provider: str, faults: dict[str, Any]) -> int:
        """``PUT /_farm/providers/{provider}/faults``; raises with the farm's reason on 4xx."""
        async with self.session.put(
            f"{self.url}/_farm/providers/{provider}/faults", json=faults
        ) as answer:
            if answer.status != 200:
                raise RuntimeError(
                    f"farm refused faults for {provider}: {answer.status} {await answer.text()}"
                )
            return answer.status
