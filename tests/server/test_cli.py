"""``imagerouter keys`` and ``imagerouter credits``: keys shown once, stored hashed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagerouter.auth import Authenticator, AuthError
from imagerouter.cli import main
from imagerouter.jobs.sqlite import SQLiteJobStore


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


async def _authenticate(db: Path, token: str) -> str:
    async with SQLiteJobStore(db) as store:
        principal = await Authenticator(store, cache_s=0).authenticate(f"Bearer {token}")
        return principal.account_name


def test_keys_create_list_revoke_and_grant(tmp_path: Path) -> None:
    """A created key works, is listed without its secret, and stops working once revoked;
    credits grant adds to the ledger."""
    data = str(tmp_path / "data")
    token = _run("keys", "create", "--account", "acme", "--credits", "40", "--data-dir", data)
    token = token.strip()
    assert token.startswith("ir_")
    db = tmp_path / "data" / "imagerouter.db"
    assert asyncio.run(_authenticate(db, token)) == "acme"
    listing = _run("keys", "list", "--data-dir", data)
    key_id = "key_" + token.split("_")[1]
    assert key_id in listing
    assert token.split("_", 2)[2] not in listing
    _run("credits", "grant", "acme", "60", "--data-dir", data)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT balance FROM accounts WHERE name = 'acme'").fetchone() == (100,)
        kinds = conn.execute("SELECT kind, amount FROM ledger ORDER BY id").fetchall()
        assert kinds == [("grant", 40), ("grant", 60)]
    _run("keys", "revoke", key_id, "--data-dir", data)
    with pytest.raises(AuthError, match="revoked"):
        asyncio.run(_authenticate(db, token))


def test_credits_grant_to_unknown_account_fails(tmp_path: Path) -> None:
    """Granting to an account that does not exist is an error naming it."""
    _run("keys", "create", "--account", "somebody", "--data-dir", str(tmp_path))
    result = CliRunner().invoke(
        main, ["credits", "grant", "nobody", "5", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "nobody" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["credits", "grant", "acme", "99999999999999999999999"], "a grant must be between 1"),
        (["credits", "grant", "acme", "-5"], "credits, not -5"),
        (["credits", "grant", "acme", "0"], "credits, not 0"),
        (["credits", "grant", "acme", "1.5"], "'1.5' is not a whole number of credits"),
        (["credits", "grant", "", "5"], "is not an account name"),
        (["keys", "create", "--account", "acme", "--credits", "-1"], "-1 is negative"),
        (["keys", "create", "--account", "acme", "--credits", str(2**63)], "more than the"),
        (["keys", "create", "--account", "a\x00b"], "is not an account name"),
        (["serve", "--port", "99999"], "not in the range 0<=x<=65535"),
        (["serve", "--port", "-1"], "not in the range 0<=x<=65535"),
        (["serve", "--workers", "-1"], "not in the range x>=0"),
    ],
)
def test_bad_arguments_are_one_line_errors_not_tracebacks(
    tmp_path: Path, args: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert says in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # refused before anything was opened


def test_a_grant_past_the_ledgers_limit_is_refused_and_grants_nothing(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _run("keys", "create", "--account", "acme", "--credits", str(2**62 - 10), "--data-dir", data)
    result = CliRunner().invoke(main, ["credits", "grant", "acme", "11", "--data-dir", data])
    assert result.exit_code == 2
    assert "would pass the most an account holds" in result.output
    _run("credits", "grant", "acme", "10", "--data-dir", data)  # exactly to the limit
    with sqlite3.connect(tmp_path / "data" / "imagerouter.db") as conn:
        assert conn.execute("SELECT balance FROM accounts").fetchone() == (2**62,)
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (2,)


def test_a_data_directory_that_is_not_one_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "imagerouter.db").write_text("not a database")
    result = CliRunner().invoke(main, ["keys", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "file is not a database" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def _key_routing(db: Path, token: str) -> str | None:
    async with SQLiteJobStore(db) as store:
        principal = await Authenticator(store, cache_s=0).authenticate(f"Bearer {token}")
        return principal.routing


def test_keys_create_stores_checked_routing_defaults(tmp_path: Path) -> None:
    """``--routing`` stores the key's default preferences (checked against the catalog); a
    provider the catalog does not know, or a bad field, is an error naming the field."""
    data = str(tmp_path / "data")
    token = _run(
        "keys",
        "create",
        "--account",
        "acme",
        "--routing",
        '{"ignore": ["openai"], "sort": "price"}',
        "--data-dir",
        data,
    ).strip()
    stored = asyncio.run(_key_routing(tmp_path / "data" / "imagerouter.db", token))
    assert stored is not None
    assert json.loads(stored) == {"ignore": ["openai"], "sort": "price"}
    for routing, words in (
        ('{"only": ["fal", "foo"]}', "routing.only[1]: unknown provider 'foo'"),
        ('{"sort": "fastest"}', "routing.sort"),
        ("{not json", "routing"),
    ):
        result = CliRunner().invoke(
            main, ["keys", "create", "--account", "b", "--routing", routing, "--data-dir", data]
        )
        assert result.exit_code == 2, result.output
        assert words in result.output
    with sqlite3.connect(tmp_path / "data" / "imagerouter.db") as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)


def test_check_config_reads_the_server_table_as_serve_does(tmp_path: Path) -> None:
    """check-config checks ``[server]`` too (a bad store was 'config OK' for it and an error
    for serve), and with ``server.farm`` set it needs no provider keys, as serve does not."""
    keys = {"FAL_KEY": "k", "WAVESPEED_API_KEY": "k", "OPENAI_API_KEY": "k"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nstore = "mysql://x"\n')
    refused = CliRunner().invoke(main, ["check-config", "--config", str(bad)], env=keys)
    assert refused.exit_code == 2
    assert f"{bad}: server.store:" in refused.output
    farm = tmp_path / "farm.toml"
    farm.write_text('[server]\nfarm = "default"\n')
    unset = dict.fromkeys(keys)  # None: taken out of the environment
    served = CliRunner().invoke(main, ["check-config", "--config", str(farm)], env=unset)
    assert served.exit_code == 0, served.output
    assert "server.farm = 'default': serve answers from the mock farm" in served.output
    assert "config OK" in served.output


def test_an_unreachable_store_is_named_without_its_password(tmp_path: Path) -> None:
    """keys, credits and serve name a PostgreSQL store they cannot reach, its password shown
    as *** (it was printed whole), and serve says which it could not reach (it said only
    'Connection refused')."""
    from tests.helpers.net import free_port

    url = f"postgresql://postgres:hunter2secret@127.0.0.1:{free_port()}/x"
    config = tmp_path / "pg.toml"
    config.write_text(f'[server]\nstore = "{url}"\nfarm = "demo"\nport = {free_port()}\n')
    for args in (
        ["keys", "list"],
        ["credits", "grant", "acme", "5"],
        ["serve"],
    ):
        result = CliRunner().invoke(main, [*args, "--config", str(config)])
        assert result.exit_code == 2, (args, result.output)
        assert "hunter2secret" not in result.output, args
        assert "postgres:***@127.0.0.1" in result.output, (args, result.output)
    assert "could not reach the store" in result.output


def test_serve_announces_the_port_it_listens_on_once_it_listens(tmp_path: Path) -> None:
    """``serve --port 0`` says the port the system gave it (it said 0); a port already taken
    gets the bind error alone, with no 'serving on' line before it."""
    import select
    import subprocess
    import sys

    command = [sys.executable, "-m", "imagerouter", "serve", "--farm", "demo"]
    command += ["--data-dir", str(tmp_path / "data")]
    server = subprocess.Popen(
        [*command, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)  # bounded: a hang fails here
        assert ready, "serve said nothing within 60 s"
        line = server.stdout.readline()
        assert line.startswith("imagerouter serving on http://127.0.0.1:"), line
        port = int(line.split(":")[2].split()[0])
        assert port > 0
        taken = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
        assert taken.returncode == 2
        assert "serving on" not in taken.stdout
        assert "address already in use" in taken.stdout + taken.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_farm_on_a_taken_port_is_one_line_not_a_traceback() -> None:
    """``imagerouter farm`` on a port something listens on: exit 2 and the bind error in one
    line, as serve says it (it was an OSError traceback, exit 1)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["farm", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert "address already in use" in result.output
    assert "Traceback" not in result.output


def test_an_output_place_that_cannot_be_written_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    """``simulate --out`` and ``new-provider --dir`` under a file (no directory can be made
    there, even as root): exit 2, one line naming the option (were tracebacks); simulate says
    so before the run, not after it; ``demo`` refuses a negative job count (it ran 0 of 0)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (
        ["simulate", "launch-week", "--hours", "0.001", "--no-charts", "--out", f"{blocker}/x"],
        ["new-provider", "acme", "--dir", f"{blocker}/x"],
        ["demo", "--jobs", "-3"],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert args[-2] in result.output, (args, result.output)  # the option it names
