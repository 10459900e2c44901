"""The provider conformance kit: check that a provider plugin keeps the imagerouter contract,
against the mock farm speaking its wire format.

The whole conformance test of a provider package::

    from imagerouter.testing import ProviderConformance
    from imagerouter_acme import AcmeProvider

    class TestAcmeConformance(ProviderConformance):
        provider_class = AcmeProvider
        model = "acme/image-1"
        entry_point = "acme"          # optional: also check discovery by entry point

Or programmatically: ``run_conformance(AcmeProvider, "acme/image-1")`` returns a report.
What each check does is in ``docs/writing-a-provider.md``.
"""

from imagerouter.testing.conformance import ProviderConformance
from imagerouter.testing.farm_thread import KitFarm
from imagerouter.testing.faults import FAULTS, Fault, describe_outcome
from imagerouter.testing.kit import Conformance, run_conformance
from imagerouter.testing.report import (
    CheckResult,
    CheckSkipped,
    ConformanceFailure,
    ConformanceReport,
)

__all__ = [
    "FAULTS",
    "CheckResult",
    "CheckSkipped",
    "Conformance",
    "ConformanceFailure",
    "ConformanceReport",
    "Fault",
    "KitFarm",
    "ProviderConformance",
    "describe_outcome",
    "run_conformance",
]
