"""The mock provider farm: every provider API a plugin registers an adapter for, wire-compatible,
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
from mockproviders.farm import Farm, plugin_adapters
from mockproviders.jobs import FarmJob, FarmJobs, FarmJobState
from mockproviders.profile import Distribution, FaultProfile, Phase, RateLimit
from mockproviders.scenario import ImageSettings, Scenario, bundled_scenarios, load_scenario
from mockproviders.serve import run_farm

__all__ = [
    "Call",
    "Distribution",
    "ErrorKind",
    "Farm",
    "FarmAdapter",
    "FarmError",
    "FarmImage",
    "FarmJob",
    "FarmJobState",
    "FarmJobs",
    "FarmRoute",
    "FaultProfile",
    "ImageSettings",
    "Phase",
    "RateLimit",
    "Scenario",
    "auth_token",
    "bundled_scenarios",
    "load_scenario",
    "plugin_adapters",
    "run_farm",
]
