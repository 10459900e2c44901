"""The mock provider farm: OpenAI Images, fal's queue API and WaveSpeed v3, wire-compatible,
with faults injected from a seeded scenario, on one loopback port.

The public API is exactly ``__all__``; see ``mockproviders/README.md`` for the control API and
the fault semantics.
"""

from mockproviders.adapter import (
    Call,
    ErrorKind,
    FarmAdapter,
    FarmError,
    FarmImage,
    FarmRoute,
    auth_token,
)
from mockproviders.fal_api import FalQueueAPI
from mockproviders.farm import Farm, builtin_adapters
from mockproviders.jobs import FarmJob, FarmJobs, FarmJobState
from mockproviders.openai_api import OpenAIImagesAPI
from mockproviders.profile import Distribution, FaultProfile, Phase, RateLimit
from mockproviders.scenario import Scenario, bundled_scenarios, load_scenario
from mockproviders.serve import run_farm
from mockproviders.wavespeed_api import WaveSpeedAPI

__all__ = [
    "Call",
    "Distribution",
    "ErrorKind",
    "FalQueueAPI",
    "Farm",
    "FarmAdapter",
    "FarmError",
    "FarmImage",
    "FarmJob",
    "FarmJobState",
    "FarmJobs",
    "FarmRoute",
    "FaultProfile",
    "OpenAIImagesAPI",
    "Phase",
    "RateLimit",
    "Scenario",
    "WaveSpeedAPI",
    "auth_token",
    "builtin_adapters",
    "bundled_scenarios",
    "load_scenario",
    "run_farm",
]
