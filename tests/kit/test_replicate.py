"""The Replicate plugin, built with the kit: it conforms, and it serves a failover."""

from __future__ import annotations

from imagerouter_replicate import ReplicateProvider, aspect_ratio

from imagerouter import CallContext, ImageRequest, Router, load_catalog, load_plugins
from imagerouter.testing import ProviderConformance
from mockproviders import Farm
from mockproviders.bridge import farm_router


class TestReplicateConforms(ProviderConformance):
    """Replicate's predictions API keeps the provider contract."""

    provider_class = ReplicateProvider
    model = "black-forest-labs/flux-dev"
    models = ("google/nano-banana-pro", "black-forest-labs/flux-dev:0123456789abcdef")
    entry_point = "replicate"


class TestReplicatePollingConforms(TestReplicateConforms):
    """Without Prefer: wait (create, then poll from the start) it keeps the contract too."""

    provider_options = {"prefer_wait_s": 0}


FAST = {"router": {"deadline_s": 10}}
FLUX = ImageRequest(model="flux-dev", prompt="a lighthouse at dusk", size="1536x1024")


async def test_replicate_serves_flux_dev_when_fal_and_wavespeed_are_down() -> None:
    """With fal and WaveSpeed down, flux-dev fails over to Replicate, third in the catalog."""
    plugins = load_plugins()
    async with Farm(adapters=plugins.farm_adapters) as farm:
        farm.set_faults("fal", {"down": True})
        farm.set_faults("wavespeed", {"down": True})
        async with farm_router(farm, FAST, plugins=plugins) as router:
            result = await router.generate(FLUX)
        replicate = farm.stats()["providers"]["replicate"]
    assert (result.provider, result.provider_model) == ("replicate", "black-forest-labs/flux-dev")
    tried = {a["provider"]: a["outcome"] for a in result.attempts}
    assert tried == {"fal": "error", "wavespeed": "error", "replicate": "ok"}
    assert replicate["generations"] == 1
    assert result.images[0].url.startswith(farm.url)


async def test_replicate_is_first_choice_for_nobody_while_fal_is_up() -> None:
    """Replicate is a failover target: with fal healthy, flux-dev never reaches it."""
    plugins = load_plugins()
    async with Farm(adapters=plugins.farm_adapters) as farm:
        async with farm_router(farm, FAST, plugins=plugins) as router:
            result = await router.generate(FLUX)
        assert farm.stats()["providers"]["replicate"]["requests"] == 0
    assert result.provider == "fal"


def test_replicate_is_optional_without_a_token() -> None:
    """Without REPLICATE_API_TOKEN the router builds and leaves Replicate out; with it, it's in."""
    keys = {"OPENAI_API_KEY": "o", "FAL_KEY": "f", "WAVESPEED_API_KEY": "w"}
    without = Router.from_config({}, environ=keys)
    assert "replicate" not in without.instances
    with_token = Router.from_config({}, environ={**keys, "REPLICATE_API_TOKEN": "r8_test"})
    assert with_token.instances["replicate"].provider.base_url == "https://api.replicate.com/v1"


def test_catalog_lists_replicate_after_the_primary_providers() -> None:
    """flux-dev and nano-banana-pro name Replicate last, marked optional."""
    catalog = load_catalog()
    for name in ("flux-dev", "nano-banana-pro"):
        entries = catalog.models[name].providers
        assert entries[-1].provider == "replicate"
        assert entries[-1].optional
        assert all(entry.provider != "replicate" for entry in entries[:-1])


async def calls_for_one_image(prefer_wait_s: int) -> dict:
    """The farm's counters after one flux-dev image that takes 300 ms to generate."""
    plugins = load_plugins()
    async with Farm(adapters=plugins.farm_adapters) as farm:
        farm.set_faults("replicate", {"generation_ms": 300})
        config = {"providers": {"replicate": {"options": {"prefer_wait_s": prefer_wait_s}}}}
        async with farm_router(farm, config, plugins=plugins) as router:
            model = router.catalog.models["flux-dev"]
            instance = router.instances["replicate"]
            ctx = CallContext(router.session, model.providers[-1].model, router.clock.now() + 5)
            output = await instance.provider.generate(FLUX, ctx)
        assert len(output.images) == 1
        return farm.stats()["providers"]["replicate"]


async def test_prefer_wait_answers_a_quick_model_in_the_create_request() -> None:
    """With Prefer: wait, a 300 ms prediction comes back finished from the create: no poll."""
    assert (await calls_for_one_image(1))["requests"] == 1
    assert (await calls_for_one_image(0))["requests"] > 1


def test_sizes_map_to_the_nearest_aspect_ratio() -> None:
    """Unified WxH sizes become the closest ratio both Replicate models accept."""
    sizes = {"1024x1024": "1:1", "1536x1024": "3:2", "1024x1536": "2:3", "1792x1024": "16:9"}
    for size, ratio in sizes.items():
        assert aspect_ratio(*ImageRequest(model="m", prompt="p", size=size).dimensions) == ratio
