"""Provider calls through the lean pool, and through the session for a context a plugin builds
itself (written against an older template): both reach the provider alike."""

from __future__ import annotations

from imagerouter import CallContext
from mockproviders import Farm
from mockproviders.bridge import farm_router

APP = "fal-ai/flux/dev"


async def test_a_context_with_or_without_the_pool_reaches_the_provider(farm: Farm) -> None:
    async with farm_router(farm) as router:
        provider = router.instances["fal"].provider
        url = f"{provider.base_url}/{APP}"
        built = CallContext(router.session, APP, router.clock.now() + 5, router.clock)
        assert built.http is None  # an old plugin's own context: the session carries it
        by_session = await provider.request_json(built, "POST", url, json_body={"prompt": "a"})
        pooled = CallContext(
            router.session, APP, router.clock.now() + 5, router.clock, http=router._http
        )
        by_pool = await provider.request_json(pooled, "POST", url, json_body={"prompt": "b"})
        later = pooled.lasting(2.0)
        assert later.http is router._http
        assert later.on_progress is None
        assert later.remaining() <= 2.0
    for answer in (by_session, by_pool):
        assert answer.status == 200
        assert answer.body["status_url"].startswith(provider.base_url)
        assert answer.headers["content-type"].startswith("application/json")
    assert farm.stats()["providers"]["fal"]["generations"] == 2
