"""Extras: the check at each door, its message, the CLI's one line, and the table kept in step
with pyproject.toml and the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagerouter import ImageRouterError, MissingExtra
from imagerouter import extras as extras_module
from imagerouter.cli import main
from imagerouter.extras import EXTRAS, Extra, missing, require

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_a_missing_module_fails_naming_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """An extra whose module is absent raises MissingExtra: what needs it, the distributions
    missing, and the pip command that brings them."""
    monkeypatch.setitem(
        EXTRAS, "fake", Extra({"json": "json", "imagerouter_no_such_module": "no-such-dist"})
    )
    with pytest.raises(MissingExtra) as raised:
        require("fake", "the fake thing")
    assert (
        str(raised.value)
        == "the fake thing needs no-such-dist: pip install 'imagerouter-framework[fake]'"
    )
    assert isinstance(raised.value, ImageRouterError)
    assert (raised.value.extra, raised.value.what, raised.value.missing) == (
        "fake",
        "the fake thing",
        ["no-such-dist"],
    )
    assert raised.value.code == "missing_extra"


def test_an_installed_extra_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXTRAS, "present", Extra({"json": "json", "sqlite3": "sqlite3"}))
    require("present", "anything")
    assert missing("present") == []


def test_included_and_combined_extras_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """An extra's includes count; ``"a,b"`` checks both and names both in the pip install."""
    monkeypatch.setitem(EXTRAS, "inner", Extra({"imagerouter_absent_a": "absent-a"}))
    monkeypatch.setitem(EXTRAS, "outer", Extra({"json": "json"}, includes=("inner",)))
    monkeypatch.setitem(EXTRAS, "other", Extra({"imagerouter_absent_b": "absent-b"}))
    assert missing("outer") == ["absent-a"]
    with pytest.raises(
        MissingExtra, match=re.escape("pip install 'imagerouter-framework[outer,other]'")
    ):
        require("outer,other", "both")
    assert missing("outer,other") == ["absent-a", "absent-b"]


def test_an_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="unknown extra 'nope'"):
        require("nope", "x")


def _requirements(extra: str) -> tuple[set[str], set[str]]:
    """(distribution names, extras of imagerouter itself) that ``extra`` lists."""
    dists, selves = set(), set()
    for requirement in PYPROJECT["optional-dependencies"][extra]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()
        if name == PYPROJECT["name"]:
            selves |= set(re.search(r"\[(.*)\]", requirement).group(1).split(","))
        else:
            dists.add(name)
    return dists, selves


def test_the_table_matches_pyproject() -> None:
    """Every extra checked at a door is one of pyproject's, listing each distribution checked
    and including the same extras; ``all`` is every one; ``dev`` pulls ``all``; the base
    dependencies hold none of them."""
    declared = PYPROJECT["optional-dependencies"]
    heavy = set()
    for name, extra in EXTRAS.items():
        dists, selves = _requirements(name)
        assert set(extra.modules.values()) <= dists, name
        assert selves == set(extra.includes), name
        heavy |= dists
    assert _requirements("all") == (set(), set(EXTRAS))
    assert set(declared) == {*EXTRAS, "all", "dev"}
    assert "all" in _requirements("dev")[1]
    base = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in PYPROJECT["dependencies"]}
    assert base == {"aiohttp", "pluggy", "pydantic", "click", "rich"}
    assert not base & heavy


def test_the_readme_tells_how_to_install_each_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in [*EXTRAS, "all"]:
        assert f"`pip install 'imagerouter-framework[{name}]'`" in readme, name


@pytest.fixture
def absent(monkeypatch: pytest.MonkeyPatch):
    """``absent("httpx", …)``: those modules look uninstalled to the checks."""
    real = extras_module._installed

    def make(*modules: str) -> None:
        monkeypatch.setattr(extras_module, "_installed", lambda m: m not in modules and real(m))

    return make


@pytest.mark.parametrize(
    ("args", "modules", "line"),
    [
        (
            ["serve", "--port", "0"],
            ("aiohttp_sse", "prometheus_client"),
            "imagerouter serve needs aiohttp-sse, prometheus-client: "
            "pip install 'imagerouter-framework[server]'",
        ),
        (
            ["keys", "list"],
            ("aiohttp_sse",),
            "imagerouter keys list needs aiohttp-sse: pip install 'imagerouter-framework[server]'",
        ),
        (
            ["status"],
            ("httpx", "httpx_sse"),
            "imagerouter status needs httpx, httpx-sse: "
            "pip install 'imagerouter-framework[client]'",
        ),
        (
            ["farm"],
            ("trustme",),
            "imagerouter farm needs trustme: pip install 'imagerouter-framework[farm]'",
        ),
        (
            ["demo"],
            ("trustme",),
            "imagerouter demo needs trustme: pip install 'imagerouter-framework[server,farm]'",
        ),
        (
            ["simulate", "launch-week"],
            ("matplotlib",),
            "imagerouter simulate needs matplotlib: "
            "pip install 'imagerouter-framework[simulate,charts]'",
        ),
        (
            ["loadtest", "steady"],
            ("locust",),
            "imagerouter loadtest needs locust: pip install 'imagerouter-framework[loadtest]'",
        ),
        (
            ["serve", "--farm", "--port", "0"],
            ("trustme",),
            "the in-process farm (serve --farm) needs trustme: "
            "pip install 'imagerouter-framework[farm]'",
        ),
    ],
)
def test_a_command_without_its_extra_says_so_in_one_line(
    absent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args, modules, line
) -> None:
    """Status 2, the message on one line of stderr, nothing on stdout, no traceback."""
    absent(*modules)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMAGEROUTER_CONFIG", raising=False)
    result = CliRunner().invoke(main, args, prog_name="imagerouter")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {line}\n"
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing was started or written


@pytest.mark.parametrize(
    ("server", "module", "line"),
    [
        (
            'store = "postgresql://u@127.0.0.1:5432/test"',
            "asyncpg",
            'store = "postgresql://…" needs asyncpg: '
            "pip install 'imagerouter-framework[postgres]'",
        ),
        (
            'state = "redis://127.0.0.1:6379/0"',
            "redis",
            "state = \"redis://…\" needs redis: pip install 'imagerouter-framework[redis]'",
        ),
        (
            'storage = { backend = "s3", bucket = "b" }',
            "boto3",
            '[server.storage] backend = "s3" needs boto3: '
            "pip install 'imagerouter-framework[s3]'",
        ),
    ],
)
def test_serve_checks_the_extras_its_settings_name(
    absent, tmp_path: Path, server: str, module: str, line: str
) -> None:
    absent(module)
    config = tmp_path / "imagerouter.toml"
    config.write_text(f'[server]\ndata_dir = "data"\n{server}\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {line}\n"
    assert not (tmp_path / "data").exists()


def test_a_postgres_store_needs_its_extra_where_it_is_opened(absent, tmp_path: Path) -> None:
    """``keys`` and ``db`` open the store the config names: PostgreSQL needs asyncpg, the
    embedded SQLite store needs nothing."""
    absent("asyncpg")
    config = tmp_path / "imagerouter.toml"
    config.write_text('[server]\nstore = "postgresql://u@127.0.0.1:5432/test"\n')
    runner = CliRunner()
    keys = runner.invoke(main, ["keys", "list", "--config", str(config)])
    assert keys.exit_code == 2
    assert keys.stderr == (
        "error: a postgresql:// job store needs asyncpg: "
        "pip install 'imagerouter-framework[postgres]'\n"
    )
    db = runner.invoke(main, ["db", "status", "--config", str(config)])
    assert db.exit_code == 2
    assert "pip install 'imagerouter-framework[postgres]'" in db.stderr
    sqlite = runner.invoke(main, ["db", "status", "--store", f"sqlite://{tmp_path}/ir.db"])
    assert sqlite.exit_code == 0, sqlite.output
