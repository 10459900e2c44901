"""The docs' samples run as written: each catalog snippet a platform engineer is told to
paste loads on top of the shipped catalog, and README's library example against the farm
routes a request."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest

from imagerouter import load_catalog
from imagerouter.scaffold import render

ROOT = Path(__file__).resolve().parents[2]
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def catalog_snippets() -> list[tuple[str, str]]:
    """(where, text) of every TOML block that writes catalog models."""
    sources = {
        "docs/writing-a-provider.md": (ROOT / "docs" / "writing-a-provider.md").read_text(),
        "the scaffold's README": render("acme")["README.md"],
    }
    return [
        (f"{where} #{index}", block)
        for where, text in sources.items()
        for index, block in enumerate(TOML_BLOCK.findall(text))
        if block.lstrip().startswith(("[[models.", "[models."))
    ]


SNIPPETS = catalog_snippets()


def test_the_docs_show_both_ways_to_name_a_provider_in_a_catalog() -> None:
    assert sum("add_providers" in text for _, text in SNIPPETS) >= 2
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize(("where", "text"), SNIPPETS, ids=[where for where, _ in SNIPPETS])
def test_a_catalog_snippet_loads_on_the_shipped_catalog(
    tmp_path: Path, where: str, text: str
) -> None:
    path = tmp_path / "my-catalog.toml"
    path.write_text(text)
    catalog = load_catalog(path)
    shipped = load_catalog()
    providers = {e.provider for m in catalog.models.values() for e in m.providers}
    assert providers - {e.provider for m in shipped.models.values() for e in m.providers}
    assert set(shipped.models) <= set(catalog.models)  # nothing shipped was lost


def test_readmes_library_example_against_the_farm_runs() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("Against the farm instead of real providers:")
    code = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert code is not None
    body = textwrap.indent(code.group(1), "    ")
    namespace: dict[str, object] = {}
    exec(f"async def sample():\n{body}\n    return result", namespace)
    result = asyncio.run(namespace["sample"]())  # type: ignore[operator]
    assert result.images
    assert result.provider in {"fal", "wavespeed", "replicate"}
