"""``imagerouter new-provider``: the package it writes is complete, lint-clean, and passes the
kit, both imported in place and installed in a fresh virtualenv where its entry point finds it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagerouter.cli import main
from imagerouter.scaffold import ScaffoldError, create_provider_package, normalize_name
from imagerouter.testing import run_conformance

FILES = [
    "README.md",
    "imagerouter_acme.py",
    "imagerouter_acme_farm.py",
    "pyproject.toml",
    "tests/test_conformance.py",
]


def new_provider(parent: Path, name: str = "acme") -> Path:
    result = CliRunner().invoke(main, ["new-provider", name, "--dir", str(parent)])
    assert result.exit_code == 0, result.output
    return parent / f"imagerouter-{name.replace('_', '-')}"


def test_new_provider_writes_a_complete_package(tmp_path: Path) -> None:
    """The command writes the five files, lists them, and wires the entry point."""
    package = new_provider(tmp_path)
    written = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert written == FILES
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points.imagerouter]\nacme = "imagerouter_acme"' in pyproject
    assert (
        "class TestAcmeConformance(ProviderConformance):"
        in (package / "tests/test_conformance.py").read_text()
    )


def test_todos_are_only_about_the_wire_format(tmp_path: Path) -> None:
    """Every TODO left in the package is a TODO(wire format), and the plugin has some."""
    package = new_provider(tmp_path)
    todos = re.findall(r"TODO\S*", "".join(p.read_text() for p in package.rglob("*.py")))
    assert todos
    assert set(todos) == {"TODO(wire"}
    assert "TODO(wire format)" in (package / "imagerouter_acme.py").read_text()


def test_generated_package_is_lint_clean(tmp_path: Path) -> None:
    """ruff check and ruff format find nothing to say about the generated code."""
    package = new_provider(tmp_path, "acme_cloud_labs")
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        run = subprocess.run(command, cwd=package, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


def test_bad_names_and_existing_directories_write_nothing(tmp_path: Path) -> None:
    """A bad or taken name, or a non-empty target, is a usage error and writes nothing."""
    for name in ("9lives", "has space", "fal", "x" * 21):
        result = CliRunner().invoke(main, ["new-provider", name, "--dir", str(tmp_path)])
        assert result.exit_code == 2
        assert "Error:" in result.output
    assert list(tmp_path.iterdir()) == []
    new_provider(tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        create_provider_package("acme", tmp_path)
    assert normalize_name("Acme-Cloud") == "acme_cloud"


@pytest.fixture
def imported_package(tmp_path: Path) -> Iterator[Path]:
    """A fresh package on sys.path, its modules forgotten afterwards."""
    package = new_provider(tmp_path, "acme_inplace")
    sys.path.insert(0, str(package))
    try:
        yield package
    finally:
        sys.path.remove(str(package))
        for module in ("imagerouter_acme_inplace", "imagerouter_acme_inplace_farm"):
            sys.modules.pop(module, None)


def test_generated_plugin_passes_the_kit_in_place(imported_package: Path) -> None:
    """Imported from its directory, the generated plugin passes every check but discovery."""
    from imagerouter_acme_inplace import AcmeInplaceProvider  # type: ignore[import-not-found]

    report = run_conformance(AcmeInplaceProvider, "acme-inplace-image-1")
    assert report.ok, str(report)
    assert [r.check for r in report.results if r.status != "passed"] == ["entry-point"]


def _offline_build_options() -> list[str]:
    """pip options that build the package without the network, or skip the test.

    With hatchling importable here, build without isolation; otherwise let pip fetch it into
    the isolated build environment from a local package index in pip's configuration.
    """
    if importlib.util.find_spec("hatchling") is not None:
        return ["--no-build-isolation"]
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    local = [url for url in re.findall(r"(file://\S+?)['\s]", config)]
    if not local:
        pytest.skip(
            "no offline build backend: hatchling is not installed and pip has no local index"
        )
    options = ["--index-url", local[0]]
    for url in local[1:]:
        options += ["--extra-index-url", url]
    return options


@pytest.mark.slow
def test_installed_package_is_found_by_entry_point_and_passes_the_kit(tmp_path: Path) -> None:
    """pip-installed into a fresh venv beside imagerouter, the package is discovered by its
    entry point and its own test suite (the kit) passes, discovery check included."""
    package = new_provider(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The new venv sees imagerouter (and pip, pytest…) through the project venv's site dir.
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_imagerouter_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    # PYTHONPATH stays: it may point this process at a checkout other than the venv's editable
    # install (a git worktree), and the package must be tested against the same imagerouter.
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "PYTHONPATH" or not k.startswith(("PYTHON", "VIRTUAL_ENV"))
    }
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "NO_PROXY": "127.0.0.1,localhost"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    install = run(
        "-m", "pip", "install", "-q", "--no-deps", *_offline_build_options(), str(package)
    )
    assert install.returncode == 0, install.stdout + install.stderr
    found = run(
        "-c",
        "from imagerouter import load_plugins; import imagerouter_acme as m; "
        "print(load_plugins().provider_origin['acme'], m.__file__)",
    )
    assert found.returncode == 0, found.stderr
    origin, module_file = found.stdout.split()
    assert origin == "acme"
    assert Path(module_file).is_relative_to(Path(site))
    assert not Path(parent, "imagerouter_acme.py").exists()  # the project venv is untouched

    tests = run("-m", "pytest", "-v", "-p", "no:cacheprovider", str(package / "tests"))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "test_is_discovered_by_entry_point PASSED" in tests.stdout
    assert re.search(r"\b22 passed\b", tests.stdout), tests.stdout
