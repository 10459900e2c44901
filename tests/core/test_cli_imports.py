"""The ``imagerouter`` command's modules: no cycle back to the group, nothing heavy at import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import imagerouter.cli

CLI_DIR = Path(imagerouter.cli.__file__).parent


@pytest.mark.parametrize(
    "path", sorted(p for p in CLI_DIR.glob("*.py") if p.name != "__init__.py"), ids=lambda p: p.name
)
def test_command_modules_do_not_import_the_group(path: Path) -> None:
    """Only cli/__init__.py adds commands to ``main``; a command module importing it back
    would bring the import cycle back."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module != "imagerouter.cli", f"{path.name}:{node.lineno}"
        elif isinstance(node, ast.Import):
            assert all(alias.name != "imagerouter.cli" for alias in node.names), path.name


@pytest.mark.slow
def test_loading_the_cli_loads_neither_the_farm_nor_the_load_tests_nor_the_simulator() -> None:
    """They are imported by the commands that use them, when those run."""
    probe = (
        "import json, sys, imagerouter.cli; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mockproviders', 'loadtests', 'locust') "
        "or m.startswith(('imagerouter.simulate', 'imagerouter.testing')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == []
