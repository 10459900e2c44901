"""``redact_url``: a store's or Redis's URL as logs, errors and commands show it, with every
password hidden, in the user info or in a query parameter."""

from __future__ import annotations

import pytest

from imagerouter.jobs.backends import open_store
from imagerouter.private import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u:pw@db:5432/ir", "postgresql://u:***@db:5432/ir"),
        ("redis://127.0.0.1:6379/0?password=secret", "redis://127.0.0.1:6379/0?password=***"),
        (
            "postgresql://u@h/db?schema=x&password=secret",
            "postgresql://u@h/db?schema=x&password=***",
        ),
        (
            "postgresql://u:pw@h/db?PassWord=a&sslmode=require&Token=b",
            "postgresql://u:***@h/db?PassWord=***&sslmode=require&Token=***",
        ),
        (
            "redis://h/0?passwd=1&pass=2&secret=3&access_token=4&api_key=5&apikey=6&key=7",
            "redis://h/0?passwd=***&pass=***&secret=***&access_token=***&api_key=***"
            "&apikey=***&key=***",
        ),
        (
            "postgresql://u@h/db?api%5Fkey=zz&schema=a%20b",
            "postgresql://u@h/db?api%5Fkey=***&schema=a%20b",
        ),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
    ],
)
def test_passwords_are_hidden_wherever_the_url_holds_them(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h:5432/db?schema=irtest&pool_max=4",
        "redis://127.0.0.1:6379/0",
        "rediss://h:6380/1?ssl_cert_reqs=none",
        "redis://h/0?password=",  # nothing to hide
        "sqlite:///var/lib/imagerouter.db",
    ],
)
def test_a_url_without_a_password_is_shown_as_written(url: str) -> None:
    assert redact_url(url) == url


def test_a_url_that_does_not_parse_shows_only_its_scheme() -> None:
    """Where its password ends cannot be told, so nothing after the scheme is shown."""
    assert redact_url("postgresql://u:pw@[::1/db?password=x") == "postgresql://…"


def test_an_unknown_store_is_named_without_its_password() -> None:
    with pytest.raises(ValueError, match="unknown job store") as refused:
        open_store("mysql://u:pw-123@h/db?password=pw-456")
    assert "pw-123" not in str(refused.value)
    assert "pw-456" not in str(refused.value)
