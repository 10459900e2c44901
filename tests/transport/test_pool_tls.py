"""The lean pool over TLS, against the farm's https mode (its own CA): the router's provider
calls verify the farm's certificate against ``ca_bundle``; without it they are refused."""

from __future__ import annotations

import json
import ssl

import pytest

from imagerouter import ImageRequest
from imagerouter.transport import HttpPool
from mockproviders import Farm
from mockproviders.bridge import farm_router

PROMPT = b'{"prompt": "a ship"}'


async def test_a_router_generates_through_the_farm_over_tls() -> None:
    async with Farm(tls=True) as farm:
        assert farm.base_url("fal").startswith("https://")
        async with farm_router(farm) as router:
            result = await router.generate(ImageRequest(model="gpt-image-2", prompt="a ship"))
        assert result.provider == "fal"
        assert farm.stats()["providers"]["fal"]["generations"] == 1


async def test_a_certificate_outside_the_trust_store_is_refused() -> None:
    async with Farm(tls=True) as farm:
        assert farm.ca_bundle is not None
        url = f"{farm.base_url('fal')}/fal-ai/flux/dev"
        async with HttpPool() as pool:
            with pytest.raises(ssl.SSLCertVerificationError):
                await pool.request("POST", url, body=PROMPT, timeout_s=5)
            assert pool.open_connections == 0
        trusted = ssl.create_default_context(cafile=farm.ca_bundle)
        async with HttpPool(ssl_context=trusted) as pool:
            answer = await pool.request(
                "POST", url, headers={"Authorization": "Key k"}, body=PROMPT, timeout_s=5
            )
        assert answer.status == 200
        assert json.loads(answer.body)["status_url"].startswith("https://")
