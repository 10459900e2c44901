"""The kit's pytest plugin: its marker is registered and its farm fixture serves every API."""

from __future__ import annotations

import json
import urllib.request

import pytest

from imagerouter.testing import KitFarm


def test_farm_fixture_serves_every_plugins_api(imagerouter_farm: KitFarm) -> None:
    """The session farm serves the adapter of every installed plugin, the built-in ones too."""
    providers = imagerouter_farm.providers()["providers"]
    assert {"openai", "fal", "wavespeed", "replicate"} <= set(providers)
    assert providers["replicate"]["base_url"] == f"{imagerouter_farm.url}/replicate/v1"
    with urllib.request.urlopen(f"{imagerouter_farm.url}/_farm/stats", timeout=5) as answer:
        assert "replicate" in json.load(answer)["providers"]


def test_conformance_marker_is_registered(pytestconfig: pytest.Config) -> None:
    """`-m imagerouter_conformance` selects the kit's tests (and --strict-markers accepts it)."""
    markers = pytestconfig.getini("markers")
    assert any(line.startswith("imagerouter_conformance:") for line in markers)
