"""``imagerouter loadtest``: options, listing, and the errors that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from imagerouter.cli import main
from imagerouter.cli.loadtest import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("120", 120), ("90s", 90), ("2m", 120), ("1h30m", 5400), ("1.5m", 90)]
)
def test_durations(text: str, seconds: float) -> None:
    """Durations read as seconds, minutes and hours."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-5", "5x"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused with an example of what works."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_without_a_scenario_it_lists_them() -> None:
    """``imagerouter loadtest`` alone lists the bundled scenarios."""
    result = CliRunner().invoke(main, ["loadtest"])
    assert result.exit_code == 0, result.output
    for name in ("launch-week", "steady", "total-outage", "retry-after-compliance"):
        assert name in result.output


def test_unknown_scenario_is_an_error(tmp_path: Path) -> None:
    """An unknown scenario exits 2 naming it, and writes no report folder."""
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["loadtest", "nope", "--out", str(out)])
    assert result.exit_code == 2
    assert "nope" in result.output
    assert "launch-week" in result.output
    assert not out.exists()


def test_a_used_report_folder_is_refused(tmp_path: Path) -> None:
    """--out into a folder that already holds something exits 2 and touches nothing."""
    (tmp_path / "old.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["loadtest", "steady", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_bad_duration_option() -> None:
    """A bad --duration is a usage error naming the option."""
    result = CliRunner().invoke(main, ["loadtest", "steady", "--duration", "soon"])
    assert result.exit_code == 2
    assert "--duration" in result.output
