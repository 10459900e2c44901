"""The SQL both backends share: ``:name`` parameters numbered for asyncpg."""

from __future__ import annotations

from imagerouter.jobs.sql import numbered


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    """Each name becomes one ``$n`` (a name used twice keeps its number); ``::type`` casts and
    names inside words are left alone."""
    assert numbered("SELECT :b, :a::text, CAST(:b AS text), x::int, a:b FROM t WHERE id = :a") == (
        "SELECT $1, $2::text, CAST($1 AS text), x::int, a:b FROM t WHERE id = $2",
        ("b", "a"),
    )
