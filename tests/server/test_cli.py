"""``imagerouter keys`` and ``imagerouter credits``: keys shown once, stored hashed."""

from __future__ import annotations

import asyncio
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
    result = CliRunner().invoke(
        main, ["credits", "grant", "nobody", "5", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "nobody" in result.output
