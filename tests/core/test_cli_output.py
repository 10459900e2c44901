"""How every ``imagerouter`` command reports an error."""

from __future__ import annotations

import pytest

from imagerouter.cli.output import fail


def test_fail_prints_the_problem_as_text_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Brackets in a message are the message's own, not rich markup to be swallowed."""
    with pytest.raises(SystemExit) as exited:
        fail("Locust is not installed: pip install 'imagerouter-framework[loadtest]'")
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: Locust is not installed: pip install 'imagerouter-framework[loadtest]'\n"
    )


def test_version_names_the_installed_distribution() -> None:
    """``--version`` reads the version of the distribution this is installed as."""
    from importlib.metadata import version

    from click.testing import CliRunner

    from imagerouter.cli import main

    result = CliRunner().invoke(main, ["--version"], prog_name="imagerouter")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"imagerouter, version {version('imagerouter-framework')}"
