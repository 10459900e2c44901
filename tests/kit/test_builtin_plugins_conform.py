"""The three built-in provider plugins pass the conformance kit against the farm."""

from __future__ import annotations

from imagerouter_fal import FalProvider
from imagerouter_openai import OpenAIProvider
from imagerouter_wavespeed import WaveSpeedProvider

from imagerouter.testing import ProviderConformance


class TestOpenAIConforms(ProviderConformance):
    """OpenAI Images keeps the provider contract."""

    provider_class = OpenAIProvider
    model = "gpt-image-2"
    entry_point = "openai"


class TestFalConforms(ProviderConformance):
    """fal's queue API keeps the provider contract."""

    provider_class = FalProvider
    model = "openai/gpt-image-2"
    entry_point = "fal"


class TestWaveSpeedConforms(ProviderConformance):
    """WaveSpeed v3 keeps the provider contract (its API has no cancel call)."""

    provider_class = WaveSpeedProvider
    model = "openai/gpt-image-2/text-to-image"
    entry_point = "wavespeed"
    cancels_at_provider = False
