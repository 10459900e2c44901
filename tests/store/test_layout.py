"""The job store's modules depend one way: the contract and the shared rules import no backend,
the backends import the contract and never each other, and no module of imagerouter.jobs
imports itself back through others (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import imagerouter.jobs

ROOT = Path(imagerouter.jobs.__file__).parent
PACKAGE = "imagerouter.jobs"
BACKENDS = (f"{PACKAGE}.sqlite", f"{PACKAGE}.postgres")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {_module(path): path for path in ROOT.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The modules of imagerouter.jobs that ``name`` imports (``from pkg import module``
    counts as importing the module)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_the_contract_and_the_shared_rules_import_no_backend() -> None:
    """store.py (the protocols), rows.py, rules.py, sql.py and common.py import no backend."""
    for name in ("store", "rows", "rules", "sql", "common", "types", "errors"):
        imported = GRAPH[f"{PACKAGE}.{name}"]
        assert not {m for m in imported for b in BACKENDS if m == b or m.startswith(b + ".")}, name
        assert f"{PACKAGE}.backends" not in imported, name


def test_the_backends_import_the_contract_and_not_each_other() -> None:
    """Each backend package imports the protocols and nothing of the other backend."""
    for backend in BACKENDS:
        (other,) = set(BACKENDS) - {backend}
        mine = [name for name in MODULES if name == backend or _is_package_of(backend, name)]
        imported = set().union(*(GRAPH[name] for name in mine))
        assert f"{PACKAGE}.store" in imported, backend
        assert not {m for m in imported if m == other or _is_package_of(other, m)}, backend


def test_no_import_cycles() -> None:
    """No module of imagerouter.jobs imports itself back (an edge into a package's own
    __init__ from inside the package is Python's doing, not a cycle of ours)."""

    def edges(name: str) -> set[str]:
        return {m for m in GRAPH[name] if not _is_package_of(m, name)}

    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        for module in edges(name):
            assert module not in path, " -> ".join((*path, module))
            if module not in done:
                visit(module, (*path, module))
        done.add(name)

    for name in MODULES:
        visit(name, (name,))
