"""Extras: the check at each door, its message, the CLI's one line, and the table kept in step
with pyproject.toml and the README."""

from __future__ import annotations

import re

import pytest

from imagerouter import ImageRouterError, MissingExtra
from imagerouter.extras import EXTRAS, Extra, missing, require


def test_a_missing_module_fails_naming_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """An extra whose module is absent raises MissingExtra: what needs it, the distributions
    missing, and the pip command that brings them."""
    monkeypatch.setitem(
        EXTRAS, "fake", Extra({"json": "json", "imagerouter_no_such_module": "no-such-dist"})
    )
    with pytest.raises(MissingExtra) as raised:
        require("fake", "the fake thing")
    assert str(raised.value) == "the fake thing needs no-such-dist: pip install 'imagerouter[fake]'"
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
    with pytest.raises(MissingExtra, match=re.escape("pip install 'imagerouter[outer,other]'")):
        require("outer,other", "both")
    assert missing("outer,other") == ["absent-a", "absent-b"]


def test_an_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="unknown extra 'nope'"):
        require("nope", "x")
