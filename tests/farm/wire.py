"""A tiny raw-HTTP client per provider API of the farm (the official SDKs have their own tests)."""

from __future__ import annotations

from typing import Any

import aiohttp

from mockproviders import Farm


class Wire:
    """Raw HTTP calls to each provider API of one farm, with a given API key."""

    def __init__(self, session: aiohttp.ClientSession, farm: Farm) -> None:
        self.session = session
        self.farm = farm

    async def openai(
        self, body: dict[str, Any] | None = None, *, key: str | None = "sk-test"
    ) -> aiohttp.ClientResponse:
        """POST /openai/v1/images/generations (the body defaults to a gpt-image-1 prompt)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = self.farm.base_url("openai") + "/images/generations"
        payload = body if body is not None else {"model": "gpt-image-1", "prompt": "a cat"}
        return await self.session.post(url, json=payload, headers=headers)

    async def fal_submit(
        self,
        body: dict[str, Any] | None = None,
        *,
        app: str = "fal-ai/gpt-image-1/text-to-image",
        key: str | None = "fal-key",
    ) -> aiohttp.ClientResponse:
        """POST /fal/queue/{app}."""
        url = f"{self.farm.base_url('fal')}/{app}"
        return await self.session.post(url, json=body or {"prompt": "a cat"}, headers=_fal(key))

    async def fal_get(self, url: str, *, key: str | None = "fal-key") -> aiohttp.ClientResponse:
        """GET a fal status or result URL."""
        return await self.session.get(url, headers=_fal(key))

    async def wavespeed_submit(
        self,
        body: dict[str, Any] | None = None,
        *,
        model: str = "openai/gpt-image-1/text-to-image",
        key: str | None = "ws-key",
    ) -> aiohttp.ClientResponse:
        """POST /wavespeed/api/v3/{model}."""
        url = f"{self.farm.base_url('wavespeed')}/api/v3/{model}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await self.session.post(url, json=body or {"prompt": "a cat"}, headers=headers)

    async def wavespeed_poll(self, task_id: str, *, key: str = "ws-key") -> aiohttp.ClientResponse:
        """GET /wavespeed/api/v3/predictions/{id}/result."""
        url = f"{self.farm.base_url('wavespeed')}/api/v3/predictions/{task_id}/result"
        return await self.session.get(url, headers={"Authorization": f"Bearer {key}"})


def _fal(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Key {key}"} if key else {}
