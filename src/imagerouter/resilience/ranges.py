"""The one check the resilience configs share: refuse a value out of its range, naming it."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["refuse_out_of_range"]


def refuse_out_of_range(config: object, checks: Iterable[tuple[str, bool]]) -> None:
    """Raise ``ValueError("<Config>.<field> is out of range: <value>")`` for the first field
    of ``config`` whose check is False (``checks``: field name and whether it is in range)."""
    for field, ok in checks:
        if not ok:
            name = type(config).__name__
            raise ValueError(f"{name}.{field} is out of range: {getattr(config, field)!r}")
