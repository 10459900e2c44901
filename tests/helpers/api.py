"""The job API's test client and settings, shared by the server, delivery and observability
tests (each folder's conftest builds its app; its ``Api`` may add helpers)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from imagerouter.auth import mint_key
from imagerouter.server.keys import store_key
from imagerouter.server.protocol import ApiRunner
from imagerouter.server.settings import ServerSettings
from tests.polling import eventually


class ApiTestServer(TestServer):
    """pytest-aiohttp's test server on the API's own runner, so the tests' servers answer
    aiohttp's parser errors in JSON exactly as ``imagerouter serve`` does."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return ApiRunner(self.app, **kwargs)


#: Router settings that keep failing jobs short.
FAST_ROUTER = {"router": {"deadline_s": 20, "max_attempts": 3, "backoff_base_s": 0.01}}
#: A job's final statuses.
FINAL = ("completed", "failed", "canceled")


def api_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """Server settings for tests: small leases, generous rate limits, no auth cache."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "workers": 4,
        "lease_s": 2.0,
        "heartbeat_s": 0.5,
        "sweep_interval_s": 0.5,
        "poll_interval_s": 0.2,
        "shutdown_grace_s": 2.0,
        "auth_cache_s": 0.0,
        "rate_limits": {
            "generate": {"rate_per_s": 1000, "burst": 1000},
            "read": {"rate_per_s": 1000, "burst": 1000},
        },
    }
    values.update(overrides)
    return ServerSettings.model_validate(values)


@dataclass
class Api:
    """A test client for one running app, with helpers to mint accounts and keys."""

    client: TestClient
    app: web.Application

    async def key(self, account: str = "acme", credits: int = 1000) -> str:
        """A new API key for ``account`` (created if new), topped up by ``credits``."""
        store = self.app[store_key]
        found = await store.create_account(account)
        if credits:
            await store.grant_credits(found.id, credits, "test")
        minted = mint_key(found.id, "test", time.time())
        await store.create_api_key(minted.record)
        return minted.token

    @staticmethod
    def auth(token: str, **headers: str) -> dict[str, str]:
        """Headers carrying ``token``."""
        return {"Authorization": f"Bearer {token}", **headers}

    async def post(self, token: str, path: str, body: Any) -> tuple[int, dict]:
        """POST ``body`` as JSON with ``token``; the status and the JSON answer."""
        answer = await self.client.post(path, json=body, headers=self.auth(token))
        return answer.status, await answer.json()

    async def assert_nothing_stored(self, token: str, balance: int) -> None:
        """The key's account has no job and still holds ``balance``: a refusal changed nothing."""
        listing = await (await self.client.get("/v1/jobs", headers=self.auth(token))).json()
        assert listing["data"] == []
        account = await (await self.client.get("/v1/account", headers=self.auth(token))).json()
        assert account["balance"] == balance

    async def wait_final(self, token: str, job_id: str, timeout_s: float = 20.0) -> dict:
        """Poll the job until it is final (a bounded hang guard) and return its body."""

        async def final() -> dict | None:
            answer = await self.client.get(f"/v1/jobs/{job_id}", headers=self.auth(token))
            body = await answer.json()
            return body if body["status"] in FINAL else None

        return await eventually(final, timeout_s=timeout_s, what=f"job {job_id} to end")


ApiFactory = Callable[..., Awaitable[Api]]
