"""The kit's pytest plugin (entry point ``pytest11: imagerouter``), loaded wherever imagerouter
is installed: it registers the ``imagerouter_conformance`` marker that every
:class:`~imagerouter.testing.ProviderConformance` test carries (``pytest -m
imagerouter_conformance`` runs only the kit), and offers a farm fixture for a package's own
provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagerouter.testing.farm_thread import KitFarm

__all__ = ["imagerouter_farm", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the kit's marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers", "imagerouter_conformance: a provider conformance-kit check (imagerouter)"
    )


@pytest.fixture(scope="session")
def imagerouter_farm() -> Iterator[KitFarm]:
    """A fault-free farm on its own thread, serving every installed plugin's API."""
    with KitFarm() as farm:
        yield farm
