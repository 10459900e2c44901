"""Every catalog model on every provider that serves it, through the router, against the farm
over real loopback HTTP: the farm serves any model id on its generic routes, so a new catalog
entry needs no new adapter."""

from __future__ import annotations

import aiohttp
import pytest

from imagerouter import ImageRequest, load_catalog
from imagerouter.catalog import Catalog
from mockproviders import Farm
from mockproviders.bridge import farm_router

CATALOG = load_catalog()
PROVIDERS = sorted({entry.provider for m in CATALOG.models.values() for entry in m.providers})
ROUTER = {"router": {"deadline_s": 20, "max_attempts": 2, "backoff_base_s": 0.01}}


def only(provider: str) -> Catalog:
    """The shipped catalog with each model served by ``provider`` alone (models it does not
    serve left out), so the router has to call it."""
    models = {
        name: model.model_copy(
            update={
                "providers": tuple(
                    e.model_copy(update={"optional": False})
                    for e in model.providers
                    if e.provider == provider
                )
            }
        )
        for name, model in CATALOG.models.items()
        if any(e.provider == provider for e in model.providers)
    }
    return Catalog(models=models)


def test_every_provider_serves_several_models() -> None:
    """The catalog routes across all four providers, and each new model has a fallback."""
    assert set(PROVIDERS) == {"fal", "openai", "replicate", "wavespeed"}
    assert all(len(model.providers) >= 2 for model in CATALOG.models.values())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_model_of_the_provider_gets_an_image_from_the_farm(
    farm: Farm, provider: str
) -> None:
    """For each model: the router calls this provider with the catalog's model id, the farm
    answers, and the image is a PNG (a video model's output an MP4) the client can fetch (or
    inline base64)."""
    catalog = only(provider)
    served: list[str] = []
    async with (
        farm_router(farm, ROUTER, catalog=catalog, seed=1) as router,
        aiohttp.ClientSession() as session,
    ):
        for name, model in catalog.models.items():
            before = farm.stats()["providers"][provider]["generations"]
            request = ImageRequest(model=name, prompt=f"a {name} test")
            result = await router.generate(request)
            assert result.provider == provider, (name, result.attempts)
            assert result.provider_model == model.providers[0].model_for(
                model.resolve_request(request)
            )
            assert farm.stats()["providers"][provider]["generations"] == before + 1, name
            assert len(result.images) == 1, name
            image = result.images[0]
            if image.url:
                async with session.get(image.url) as answer:
                    assert answer.status == 200, (name, image.url)
                    magic = b"ftyp" if model.kind == "video" else b"\x89PNG"
                    data = await answer.read()
                    assert magic in data[:8], name
            else:
                assert image.b64_json, name
            served.append(name)
    assert served == list(catalog.models)
