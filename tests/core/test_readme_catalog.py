"""The README's catalog table is the catalog file's, as ``imagerouter models --markdown`` prints
it: regenerate and paste it whenever the catalog changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from imagerouter.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- catalog:start -->\n", "\n<!-- catalog:end -->"


def test_readme_catalog_table_equals_the_generated_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the markers: exactly what the command prints for the shipped catalog."""
    monkeypatch.delenv("IMAGEROUTER_CATALOG", raising=False)
    monkeypatch.delenv("IMAGEROUTER_CONFIG", raising=False)
    text = README.read_text()
    pasted = text[text.index(START) + len(START) : text.index(END)]
    result = CliRunner().invoke(main, ["models", "--markdown"])
    assert result.exit_code == 0, result.output
    assert pasted == result.output.rstrip("\n"), (
        "README catalog table is stale: paste `imagerouter models --markdown` between the markers"
    )
