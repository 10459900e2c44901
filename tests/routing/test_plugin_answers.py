"""A plugin that answers wrongly fails over like one that raises: the job goes to the next
provider, and the wrong answer is recorded against the plugin that gave it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from imagerouter import (
    GeneratedImage,
    ImageRequest,
    Provider,
    ProviderOutput,
    Router,
    hookimpl,
    load_plugins,
)
from imagerouter.catalog import Catalog, load_catalog
from imagerouter.generation import output_problem

PIXEL = base64.b64encode(b"pixel").decode()


class SolidProvider(Provider):
    """Makes a one-pixel image without any network call."""

    provider_id = "solid"

    async def generate(self, request: ImageRequest, ctx: Any) -> ProviderOutput:
        return ProviderOutput([GeneratedImage(b64_json=PIXEL)], "solid-1")


def wrong_provider(answer: object) -> type[Provider]:
    class WrongProvider(Provider):
        """Returns ``answer`` from every call, as a plugin with a bug would."""

        provider_id = "wrong"

        async def generate(self, request: ImageRequest, ctx: Any) -> Any:
            return answer

    return WrongProvider


class _Plugin:
    def __init__(self, *providers: type[Provider]) -> None:
        self.providers = providers

    @hookimpl
    def register_providers(self, register: Any) -> None:
        for provider in self.providers:
            register(provider)


def _router(answer: object) -> Router:
    plugin = _Plugin(wrong_provider(answer), SolidProvider)
    catalog = load_catalog().merged(
        Catalog.model_validate(
            {
                "models": {
                    "two": {
                        "credits": {"low": 1, "standard": 1, "high": 1},
                        "policy": "priority",
                        "providers": [
                            {"provider": "wrong", "model": "w-1"},
                            {"provider": "solid", "model": "s-1"},
                        ],
                    }
                },
                "sources": ["<test>"],
            }
        )
    )
    return Router.from_config(
        {"providers": {name: {"enabled": False} for name in ("openai", "fal", "wavespeed")}},
        plugins=load_plugins(entry_points=False, extra=[plugin]),
        catalog=catalog,
        environ={},
    )


WRONG_ANSWERS = {
    "a dict": ({"images": [{"url": "http://x/1.png"}]}, "returned dict, not a ProviderOutput"),
    "None": (None, "returned NoneType, not a ProviderOutput"),
    "strings": (ProviderOutput(["http://x/1.png"]), "an image of type str"),  # type: ignore[list-item]
    "no images": (ProviderOutput([]), "returned no images"),
    "an empty image": (ProviderOutput([GeneratedImage()]), "neither a url nor b64_json"),
}


@pytest.mark.parametrize("case", WRONG_ANSWERS)
async def test_a_wrong_answer_fails_over_to_the_next_provider(case: str) -> None:
    answer, problem = WRONG_ANSWERS[case]
    async with _router(answer) as router:
        result = await router.generate(ImageRequest(model="two", prompt="anything"))
        health = router.instances["wrong"].health
        assert health.score < health.config.neutral  # the failure counts against it
    assert result.provider == "solid"
    first, served = result.attempts
    assert (first["provider"], first["outcome"]) == ("wrong", "error")
    assert first["error_class"] == "ProviderUnavailable"
    assert problem in first["error"]
    assert (served["provider"], served["outcome"]) == ("solid", "ok")


def test_a_right_answer_has_no_problem() -> None:
    assert output_problem(ProviderOutput([GeneratedImage(url="http://x/1.png")])) is None
    assert output_problem(ProviderOutput([GeneratedImage(b64_json=PIXEL)])) is None
