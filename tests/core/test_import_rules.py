"""The import rules of DESIGN.md, enforced by reading every module's imports (nested ones too).

- The core (``src/imagerouter`` but ``simulate/``, ``testing/``, ``cli/`` and ``scaffold/``)
  never imports the farm, the load tests, the simulator, the test kit or the CLI.
- The simulator never imports the load tests (the traffic shapes both use live in the core).
- The farm depends on the core's public contract only; :mod:`mockproviders.bridge`, the one
  module that joins a router and the job API to a farm, may also reach the router and the
  server's app keys.
- The load tests (but their benchmarks, which measure internals) use the public API and CLI.
- Plugins use the public API (and the farm's adapter toolkit, for their farm adapters).
- No import cycle joins modules of different concepts (module-level imports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_CORE = (
    "imagerouter.simulate",
    "imagerouter.testing",
    "imagerouter.cli",
    "imagerouter.scaffold",
)
CORE_MAY_NOT = ("mockproviders", "loadtests", *NOT_CORE)
#: ``python -m imagerouter`` runs the CLI: the one core module that may name it.
ENTRY = "imagerouter.__main__"
#: What the farm may import of the core: the public contract (and ``extras``, the one check
#: that a missing extra fails with the pip install that fixes it).
FARM_CONTRACT = (
    "imagerouter.bundled",
    "imagerouter.clock",
    "imagerouter.errors",
    "imagerouter.eventloop",
    "imagerouter.extras",
    "imagerouter.config",
    "imagerouter.hookspecs",
    "imagerouter.plugins",
    "imagerouter.generation",
    # The farm's per-key rate limit is the core's token bucket (a pure state machine).
    "imagerouter.resilience.token_bucket",
)
BRIDGE_ALSO = ("imagerouter.router", "imagerouter.server.keys")
LOADTESTS_MAY = (
    "imagerouter.bundled",
    "imagerouter.client",
    "imagerouter.config",
    "imagerouter.errors",
    "imagerouter.shapes",
    "imagerouter.server.settings",
)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[0] in ("src", "plugins"):
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of this repository."""
    rel = Path(*name.split("."))
    return any(
        (ROOT / base / rel).with_suffix(".py").exists()
        or (ROOT / base / rel / "__init__.py").exists()
        for base in ("src", ".", "plugins")
    )


def modules(*folders: str) -> Iterator[tuple[str, Path]]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "templates" not in path.parts:
                yield module_name(path), path


def imports(
    path: Path, name: str | None = None, *, top_level_only: bool = False
) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``path`` (module ``name``), nested ones too;
    relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = (package or "").split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # ``from pkg import submodule`` names the submodule
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if is_module(sub) else base


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(folders: tuple[str, ...], rule) -> list[str]:
    found = []
    for name, path in modules(*folders):
        for line, target in imports(path):
            why = rule(name, target)
            if why:
                found.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target} ({why})")
    return sorted(set(found))


def test_the_core_imports_neither_the_farm_nor_the_tools_built_on_it() -> None:
    def rule(name: str, target: str) -> str | None:
        if under(name, NOT_CORE) or name == ENTRY:
            return None
        if under(target, CORE_MAY_NOT):
            return "the core never imports the farm, load tests, simulator, kit or CLI"
        return None

    assert violations(("src/imagerouter",), rule) == []


def test_the_simulator_does_not_import_the_load_tests() -> None:
    def rule(name: str, target: str) -> str | None:
        if under(name, ("imagerouter.simulate",)) and under(target, ("loadtests",)):
            return "shared pieces live in the core"
        return None

    assert violations(("src/imagerouter/simulate",), rule) == []


def test_the_farm_depends_on_the_public_contract_only() -> None:
    def rule(name: str, target: str) -> str | None:
        if under(target, ("loadtests",)):
            return "the farm never imports the load tests"
        if not under(target, ("imagerouter",)) or target == "imagerouter":
            return None
        allowed = FARM_CONTRACT + (BRIDGE_ALSO if name == "mockproviders.bridge" else ())
        if not under(target, allowed):
            return "outside the public contract"
        return None

    assert violations(("mockproviders",), rule) == []


def test_the_load_tests_use_the_public_api_and_cli() -> None:
    def rule(name: str, target: str) -> str | None:
        if name.startswith("loadtests.bench"):
            return None  # benchmarks measure the internals themselves
        public = target == "imagerouter" or under(target, LOADTESTS_MAY)
        if under(target, ("imagerouter",)) and not public:
            return "the load tests use the public API and the CLI"
        return None

    assert violations(("loadtests",), rule) == []


def test_plugins_use_the_public_api() -> None:
    def rule(name: str, target: str) -> str | None:
        if under(target, ("imagerouter",)) and target != "imagerouter":
            return "a plugin imports from the public package `imagerouter`"
        if under(target, ("loadtests",)):
            return "a plugin never imports the load tests"
        return None

    assert violations(("plugins",), rule) == []


def concept(name: str) -> str:
    """``imagerouter.server.app`` → ``imagerouter.server``; a flat core module is its own."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "imagerouter" else parts[0]


def test_no_import_cycle_joins_two_concepts() -> None:
    known = dict(modules("src/imagerouter", "mockproviders", "plugins"))
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for _, target in imports(path, top_level_only=True):
            if target in known and target != name:
                graph[name].add(target)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len({concept(m) for m in component}) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == [], "import cycles across concepts: " + "; ".join(
        " ↔ ".join(c) for c in cycles
    )


def test_the_rules_see_a_forbidden_arrow(tmp_path: Path) -> None:
    """The reader itself: a nested, relative import of the farm is found and resolved."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from mockproviders import Farm\n    from . import router\n")
    found = list(imports(module, "imagerouter.probe"))
    assert (2, "mockproviders") in found
    assert (3, "imagerouter.router") in found
