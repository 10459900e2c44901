"""``ProviderConformance``: the kit as a pytest base class. A provider package's whole
conformance test::

    from imagerouter.testing import ProviderConformance
    from imagerouter_acme import AcmeProvider

    class TestAcmeConformance(ProviderConformance):
        provider_class = AcmeProvider
        model = "acme/image-1"

Each check is one test (each fault one parametrized case), sharing one farm per class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imagerouter.provider import Provider
from imagerouter.testing.faults import FAULTS, Fault
from imagerouter.testing.kit import Conformance
from imagerouter.testing.report import CheckSkipped
from mockproviders import FarmAdapter

__all__ = ["ProviderConformance"]


class ProviderConformance:
    """Subclass it as ``Test…``, set ``provider_class`` and ``model``, and pytest runs the kit.

    Every other attribute has a default that fits a plugin registering its own farm adapter.
    """

    pytestmark: ClassVar[list[Any]] = [pytest.mark.imagerouter_conformance]

    #: The plugin's Provider subclass.
    provider_class: ClassVar[type[Provider]]
    #: A provider model id the farm adapter serves.
    model: ClassVar[str]
    #: The adapter for the provider's wire format (default: the one the plugin registers, else
    #: an installed plugin's adapter of the same provider id).
    farm_adapter: ClassVar[FarmAdapter | None] = None
    #: The module with the hook implementations (default: where provider_class is defined).
    plugin: ClassVar[object | None] = None
    #: The entry-point name to check discovery by (None skips that check).
    entry_point: ClassVar[str | None] = None
    #: More provider model ids to round-trip.
    models: ClassVar[Sequence[str]] = ()
    #: A catalog file laid over the shipped one; its entries for this provider round-trip.
    catalog: ClassVar[str | Path | None] = None
    #: The API can cancel a queued job (False for one without a cancel call).
    cancels_at_provider: ClassVar[bool] = True
    #: A callback holding the event loop longer than this counts as blocking.
    slow_callback_s: ClassVar[float] = 1.0
    #: The faults to check.
    faults: ClassVar[Sequence[Fault]] = FAULTS
    #: The plugin's options (laid over the farm's fast polling settings).
    provider_options: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls) -> Iterator[Conformance]:
        """The kit for this class's plugin, with its farm running."""
        with Conformance(
            cls.provider_class,
            cls.model,
            farm_adapter=cls.farm_adapter,
            plugin=cls.plugin,
            entry_point=cls.entry_point,
            models=cls.models,
            catalog=cls.catalog,
            cancels_at_provider=cls.cancels_at_provider,
            slow_callback_s=cls.slow_callback_s,
            faults=cls.faults,
            provider_options=cls.provider_options,
        ) as kit:
            yield kit

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One case of ``test_fault_is_classified`` per fault in ``faults``."""
        if "fault" in metafunc.fixturenames:
            faults = type(self).faults
            metafunc.parametrize("fault", faults, ids=[fault.id for fault in faults])

    @staticmethod
    def _check(kit: Conformance, name: str) -> None:
        try:
            kit.run_check(name)
        except CheckSkipped as skipped:
            pytest.skip(str(skipped))

    def test_registers_through_its_hooks(self, conformance: Conformance) -> None:
        """The plugin's hooks register the provider class (and its farm adapter) cleanly."""
        self._check(conformance, "registration")

    def test_is_discovered_by_entry_point(self, conformance: Conformance) -> None:
        """The installed package exposes the plugin in the ``imagerouter`` entry-point group."""
        self._check(conformance, "entry-point")

    def test_generate_round_trip(self, conformance: Conformance) -> None:
        """A healthy farm gives back one fetchable image, directly and through the queue."""
        self._check(conformance, "round-trip")

    def test_models_round_trip(self, conformance: Conformance) -> None:
        """Every model id the plugin serves (including catalog entries) round-trips."""
        self._check(conformance, "models")

    def test_fault_is_classified(self, conformance: Conformance, fault: Fault) -> None:
        """Each fault the farm injects becomes exactly the error the contract names."""
        self._check(conformance, f"fault:{fault.id}")

    def test_deadline_times_out_and_cancels(self, conformance: Conformance) -> None:
        """A passed deadline is a ProviderTimeout; the queued job is cancelled at the provider."""
        self._check(conformance, "deadline")

    def test_task_cancellation_propagates(self, conformance: Conformance) -> None:
        """Cancelling the call propagates CancelledError and cancels the job at the provider."""
        self._check(conformance, "cancellation")

    def test_never_blocks_the_event_loop(self, conformance: Conformance) -> None:
        """No time.sleep, blocking socket or slow callback on the event loop."""
        self._check(conformance, "non-blocking")

    def test_never_leaks_the_api_key(self, conformance: Conformance) -> None:
        """The API key never appears in logs or in an exception's text."""
        self._check(conformance, "secrets")
