"""A provider that does not serve a model's id (404) is no reason to fail the job: the job
fails over to the model's next provider, and the provider's health is not blamed for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagerouter import ImageRequest, ModelNotServed
from mockproviders import Farm
from mockproviders.bridge import farm_router

CATALOG = """
[models."flux-dev"]
description = "flux-dev, with a fal app id the farm (like fal) answers 404 for."
policy = "priority"
credits = { low = 6, standard = 6, high = 6 }

[[models."flux-dev".providers]]
provider = "fal"
model = "retired-app"
cost_usd = 0.025

[[models."flux-dev".providers]]
provider = "wavespeed"
model = "wavespeed-ai/flux-dev"
cost_usd = 0.02
"""


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    """Every provider healthy."""
    async with Farm() as running:
        yield running


async def test_a_404_for_the_model_fails_over_and_leaves_the_provider_healthy(
    farm: Farm, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    async with farm_router(farm, {"catalog": str(catalog)}) as router:
        results = [
            await router.generate(ImageRequest(model="flux-dev", prompt=f"a heron {n}"))
            for n in range(8)
        ]
        status = {p["name"]: p for p in router.provider_status()}
    for result in results:
        assert result.provider == "wavespeed"
        first = next(a for a in result.attempts if a["outcome"] == "error")
        assert (first["provider"], first["status"]) == ("fal", 404)
        assert first["error_class"] == ModelNotServed.__name__
    # eight 404s in a row: a breaker blaming fal would have opened (its other models are fine)
    assert status["fal"]["breaker"]["state"] == "closed", status["fal"]
