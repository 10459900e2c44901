"""SQL written once for both backends: statements with ``:name`` parameters, and *steps*.

SQLite takes ``:name`` parameters as they are; the PostgreSQL backend numbers them into
asyncpg's ``$1, $2…`` (:func:`numbered`). A rule that needs several statements with Python
between them is written as a generator of :class:`Query` objects that receives each one's
answer (:data:`Steps`), so that one text runs on SQLite's synchronous connection and on
asyncpg's coroutines alike; each backend has a small ``run_steps`` that drives it inside its
own transaction. :mod:`imagerouter.jobs.rules` holds the rules written this way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["Query", "Steps", "execute", "fetch_row", "fetch_value", "numbered"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """One statement, its parameters by name, and what its answer is: the first column of
    the first row (``value``), the first row (``row``), or None (``nothing``)."""

    sql: str
    params: dict[str, Any]
    want: Literal["value", "row", "nothing"]


#: A rule as steps: yields each :class:`Query`, is sent its answer, returns its result.
Steps = Generator[Query, Any, T]


def fetch_value(sql: str, **params: Any) -> Query:
    """A statement whose answer is its first row's first column (None without a row)."""
    return Query(sql, params, "value")


def fetch_row(sql: str, **params: Any) -> Query:
    """A statement whose answer is its first row (None without one)."""
    return Query(sql, params, "row")


def execute(sql: str, **params: Any) -> Query:
    """A statement run for its effect; its answer is None."""
    return Query(sql, params, "nothing")


# ``:name``, but not the second half of a ``::type`` cast.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with each ``:name`` replaced by ``$n`` (one number per name, in order of first
    appearance), and the names in number order: for asyncpg."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match[1]
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(names)
