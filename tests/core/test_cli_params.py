"""Every number a user types on the command line is checked before anything runs: a bad one
is a usage error (exit 2) naming the option and saying why, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from imagerouter.cli import main
from imagerouter.cli.params import parse_duration

BAD = {
    "farm port above 65535": (["farm", "--port", "65536"], "--port"),
    "farm port negative": (["farm", "--port", "-1"], "--port"),
    "farm port not a number": (["farm", "--port", "http"], "--port"),
    "serve port above 65535": (["serve", "--port", "70000"], "--port"),
    "serve workers negative": (["serve", "--workers", "-1"], "--workers"),
    "simulate hours NaN": (["simulate", "launch-week", "--hours", "nan"], "--hours"),
    "simulate hours inf": (["simulate", "launch-week", "--hours", "inf"], "--hours"),
    "simulate hours zero": (["simulate", "launch-week", "--hours", "0"], "--hours"),
    "simulate hours negative": (["simulate", "launch-week", "--hours", "-2"], "--hours"),
    "simulate hours past a year": (["simulate", "launch-week", "--hours", "1e9"], "--hours"),
    "simulate rate NaN": (["simulate", "launch-week", "--rate", "NaN"], "--rate"),
    "simulate rate -inf": (["simulate", "launch-week", "--rate", "-inf"], "--rate"),
    "simulate rate zero": (["simulate", "launch-week", "--rate", "0"], "--rate"),
    "simulate rate huge": (["simulate", "launch-week", "--rate", "1e300"], "--rate"),
    "simulate seed negative": (["simulate", "launch-week", "--seed", "-1"], "--seed"),
    "simulate seed past 64 bits": (["simulate", "launch-week", "--seed", str(2**70)], "--seed"),
    "loadtest users zero": (["loadtest", "steady", "--users", "0"], "--users"),
    "loadtest users huge": (["loadtest", "steady", "--users", "99999999999"], "--users"),
    "loadtest workers negative": (["loadtest", "steady", "--workers", "-3"], "--workers"),
    "loadtest workers huge": (["loadtest", "steady", "--workers", "100000"], "--workers"),
    "loadtest duration inf": (["loadtest", "steady", "--duration", "inf"], "--duration"),
    "loadtest duration NaN": (["loadtest", "steady", "--duration", "nan"], "--duration"),
    "loadtest duration zero": (["loadtest", "steady", "--duration", "0s"], "--duration"),
    "loadtest drain of years": (["loadtest", "steady", "--drain", "100000h"], "--drain"),
    # credits grant's AMOUNT is the store's check (one line): tests/core/test_cli_errors.py
    "keys create credits negative": (
        ["keys", "create", "--account", "a", "--credits", "-1"],
        "--credits",
    ),
    "keys create credits past the limit": (
        ["keys", "create", "--account", "a", "--credits", str(2**63)],
        "--credits",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_number_is_a_usage_error_naming_the_option(case: str) -> None:
    args, option = BAD[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("text", ["inf", "nan", "-5", "0", "1e400"])
def test_parse_duration_refuses_what_is_not_a_finite_positive_time(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_reads_go_style_and_bare_seconds() -> None:
    assert (parse_duration("90s"), parse_duration("2m"), parse_duration("120")) == (90, 120, 120)
