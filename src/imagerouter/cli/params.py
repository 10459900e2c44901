"""The command line's own parameter types: every number and name a user types is checked
here, so a bad one is a click usage error (exit 2) naming the option, never a traceback."""

from __future__ import annotations

import math
from typing import Any

import click

from imagerouter.jobs.store import MAX_BALANCE
from imagerouter.resilience import headers

__all__ = [
    "PORT",
    "SEED",
    "AccountName",
    "CreditAmount",
    "Duration",
    "FiniteFloat",
    "parse_credits",
    "parse_duration",
    "server_url_option",
]

#: A TCP port to listen on; 0 picks a free one.
PORT = click.IntRange(0, 65535)
#: A random seed: any whole number a 64-bit signed integer holds, 0 or more.
SEED = click.IntRange(0, 2**63 - 1)


def parse_duration(text: str) -> float:
    """``"120"``, ``"120s"``, ``"2m"``, ``"1h30m"`` → seconds; ValueError otherwise (also for
    0, negative, NaN and infinite durations)."""
    total = headers.parse_duration(text)
    if total is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 120, 90s, 2m, 1h30m)")
    if not math.isfinite(total) or not total > 0:
        raise ValueError(f"the duration must be a finite number of seconds over 0, not {text!r}")
    return total


class Duration(click.ParamType):
    """A duration (:func:`parse_duration`) of at most ``max_s`` seconds."""

    name = "DURATION"

    def __init__(self, max_s: float = 7 * 86400) -> None:
        self.max_s = max_s

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds > self.max_s:
            self.fail(f"{value!r} is longer than the {self.max_s:g} s allowed", param, ctx)
        return seconds


class FiniteFloat(click.ParamType):
    """A finite number over ``above`` (exclusive) and at most ``most``; NaN and inf refused."""

    name = "number"

    def __init__(self, *, above: float = 0.0, most: float) -> None:
        self.above, self.most = above, most

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if not number > self.above:
            self.fail(f"{value!r} must be more than {self.above:g}", param, ctx)
        if number > self.most:
            self.fail(f"{value!r} is more than the maximum {self.most:g}", param, ctx)
        return number


def parse_credits(value: object) -> int:
    """A whole number of credits as typed (``1000``, ``1_000``); ValueError otherwise. The
    range is the caller's: a grant's is the store's :func:`~imagerouter.jobs.store.check_grant`."""
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number of credits") from None


class CreditAmount(click.ParamType):
    """A whole number of credits the ledger takes: 1..MAX_BALANCE (0 too, with ``zero``).
    Credits are only granted from the command line, never taken."""

    name = "credits"

    def __init__(self, *, zero: bool = False) -> None:
        self.zero = zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            amount = parse_credits(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if amount < 0:
            self.fail(
                f"{amount} is negative: credits are only granted here, never taken", param, ctx
            )
        if amount == 0 and not self.zero:
            self.fail("0 credits grants nothing: give a positive amount", param, ctx)
        if amount > MAX_BALANCE:
            self.fail(
                f"{amount} is more than the {MAX_BALANCE} credits an account can hold", param, ctx
            )
        return amount


class AccountName(click.ParamType):
    """An account name: 1 to 200 printable characters."""

    name = "account"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip() or len(text) > 200 or not text.isprintable():
            self.fail(f"{text!r} is not an account name (1-200 printable characters)", param, ctx)
        return text


#: ``--url``: the running server a client command talks to.
server_url_option = click.option(
    "--url",
    envvar="IMAGEROUTER_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The server (env IMAGEROUTER_URL).",
)
