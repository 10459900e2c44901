"""A command that cannot do what it was asked says so in one line (``error: …``, exit status 2):
no traceback, no usage dump, no option silently ignored, nothing created on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from imagerouter.cli import main
from imagerouter.jobs.store import MAX_BALANCE

NO_KEYS = {"FAL_KEY": None, "WAVESPEED_API_KEY": None, "OPENAI_API_KEY": None}


def _invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def _assert_one_error_line(result: Result, *says: str) -> str:
    """Exit 2, no traceback, no usage dump, and a single ``error:`` line holding ``says``."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "Usage:" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for words in says:
        assert words in errors[0], (words, errors[0])
    return errors[0]


# --- 1: serve on a database it cannot write ---------------------------------------------------


@contextmanager
def _shared_dir() -> Iterator[Path]:
    """A directory outside pytest's (root-only) temporary tree, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="imagerouter-ro-"))
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unprivileged(data: Path) -> dict[str, Any]:
    """subprocess arguments running as a user file modes bind: root writes a 0444 file all
    the same, so root hands ``data`` to ``nobody`` and runs the command as it."""
    if os.geteuid() != 0:
        return {}
    nobody = 65534
    for path in (data, *data.rglob("*")):
        os.chown(path, nobody, nobody)
    return {"user": nobody, "group": nobody, "extra_groups": []}


#: How the data directory is spoiled → what serve says after the database's path.
READ_ONLY = " cannot be written (attempt to write a readonly database): "
SPOILED = {
    "file read-only": READ_ONLY,
    "directory read-only": READ_ONLY,
    "not a database": ": file is not a database",
}


def _spoil(data: Path, how: str) -> None:
    if how == "file read-only":
        os.chmod(data / "imagerouter.db", 0o444)
    elif how == "directory read-only":
        os.chmod(data, 0o500)
    else:
        (data / "imagerouter.db").write_text("not a database")


@pytest.mark.slow
@pytest.mark.parametrize("how", list(SPOILED))
def test_serve_on_a_database_it_cannot_use_is_one_line_naming_it(how: str) -> None:
    """A read-only imagerouter.db (or data directory), or a file that is no database, was an
    sqlite3 traceback, exit 1; keys and credits already said it in one line."""
    with _shared_dir() as shared:
        data = shared / "data"
        created = _invoke("keys", "create", "--account", "acme", "--data-dir", str(data))
        assert created.exit_code == 0, created.output
        db = data / "imagerouter.db"
        as_user = _unprivileged(data)
        _spoil(data, how)
        command = [sys.executable, "-m", "imagerouter", "serve", "--farm", "demo", "--port", "0"]
        done = subprocess.run(
            [*command, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=shared,
            env={**os.environ, "HOME": str(shared)},
            **as_user,
        )
        os.chmod(data, 0o700)  # for the clean-up
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "serving on" not in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: {db}{SPOILED[how]}"), errors[0]


# --- 2: a data directory without a database ----------------------------------------------------

USES_A_STORE = {
    "keys list": ["keys", "list"],
    "keys revoke": ["keys", "revoke", "key_x"],
    "credits grant": ["credits", "grant", "acme", "10"],
}


@pytest.mark.parametrize("command", list(USES_A_STORE))
@pytest.mark.parametrize("exists", [False, True], ids=["no directory", "empty directory"])
def test_a_command_that_only_uses_a_store_refuses_a_data_dir_without_one(
    tmp_path: Path, command: str, exists: bool
) -> None:
    """A mistyped --data-dir made an empty database and listed (or refused) from it."""
    data = tmp_path / "typo"
    if exists:
        data.mkdir()
    result = _invoke(*USES_A_STORE[command], "--data-dir", str(data))
    _assert_one_error_line(
        result, f"no job store at {data / 'imagerouter.db'}", "`imagerouter serve`"
    )
    assert sorted(data.iterdir()) == [] if exists else not data.exists()


def test_keys_create_still_sets_a_data_directory_up(tmp_path: Path) -> None:
    """Creating the first key is how a data directory starts (README): it makes the store."""
    data = tmp_path / "new"
    result = _invoke("keys", "create", "--account", "acme", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert (data / "imagerouter.db").is_file()
    assert _invoke("keys", "list", "--data-dir", str(data)).exit_code == 0


# --- 3: a grant out of range -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -5, MAX_BALANCE + 1])
def test_a_grant_out_of_range_is_the_stores_reason_in_one_line(tmp_path: Path, amount: int) -> None:
    """0 and negative grants were click's three-line usage error."""
    data = tmp_path / "data"
    result = _invoke("credits", "grant", "acme", str(amount), "--data-dir", str(data))
    line = _assert_one_error_line(result)
    assert line == f"error: a grant must be between 1 and {MAX_BALANCE} credits, not {amount}"
    assert not data.exists()  # refused before anything was opened


# --- 4: db --store that is no store URL --------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "shown"),
    [("notaurl", "notaurl"), ("mysql://admin:hunter2@db/x", "mysql://admin:***@db/x")],
)
@pytest.mark.parametrize("command", ["status", "migrate"])
def test_db_names_a_store_url_it_does_not_take_and_what_it_takes(
    store: str, shown: str, command: str
) -> None:
    """It said ``<code>: server.store: String should match pattern …``."""
    result = _invoke("db", command, "--store", store)
    line = _assert_one_error_line(
        result, f"--store {shown} is not a job store URL", "postgresql://", "sqlite:///"
    )
    assert "<code>" not in line
    assert "hunter2" not in result.output


# --- 5: status against a server that is not imagerouter ----------------------------------------


class _WebPage(BaseHTTPRequestHandler):
    """Any GET: a web page with ``status``, as a site or a proxy answers a path it lacks."""

    status = 404

    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><html><body><h1>Not here</h1>" + b"<p>filler</p>" * 50
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test's output is the command's."""


class _AlwaysOk(_WebPage):
    """The same page with 200 on every path, as a catch-all site answers."""

    status = 200


@contextmanager
def _web_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A plain HTTP server on a free loopback port, its URL; shut down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("handler", [_WebPage, _AlwaysOk], ids=["404 page", "200 page"])
@pytest.mark.parametrize("key", [None, "some-key"])
def test_status_says_a_url_that_is_no_imagerouter_server_is_not_one(
    handler: type[BaseHTTPRequestHandler], key: str | None
) -> None:
    """It printed the whole HTML page (a 404), or a JSON traceback (a 200)."""
    pytest.importorskip("httpx")
    with _web_server(handler) as url:
        args = ["status", "--url", url] + (["--key", key] if key else [])
        result = _invoke(*args, env={"IMAGEROUTER_API_KEY": None})
    status = "200" if handler is _AlwaysOk else "404"
    _assert_one_error_line(
        result, url, "did not answer as an imagerouter server", status, "text/html"
    )
    assert "<html" not in result.output


# --- 6: generate against nothing ---------------------------------------------------------------


def test_generate_names_the_url_it_cannot_reach() -> None:
    """It said ``ConnectError: [Errno 111] Connection refused``, not where."""
    pytest.importorskip("httpx")
    from tests.helpers.net import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = _invoke("generate", "a cat", "--url", url, env={"IMAGEROUTER_API_KEY": None})
    _assert_one_error_line(result, f"cannot reach {url}")


# --- 7: models on a config check-config refuses ------------------------------------------------

ORPHAN_MODEL = """\
[models."orphan"]
credits = { low = 1, standard = 1, high = 1 }
providers = [{ provider = "nosuch", model = "x/y", cost_usd = 0.01 }]
"""


def test_models_refuses_a_catalog_that_check_config_refuses_in_its_words(tmp_path: Path) -> None:
    """A catalog naming a provider no plugin registers: check-config (and serve) refuse it,
    models listed it. Keys are not the catalog's business: models needs none."""
    (tmp_path / "catalog.toml").write_text(ORPHAN_MODEL)
    config = tmp_path / "imagerouter.toml"
    config.write_text('catalog = "catalog.toml"\n')
    keys = {"FAL_KEY": "k", "WAVESPEED_API_KEY": "k", "OPENAI_API_KEY": "k"}
    checked = _invoke("check-config", "--config", str(config), env=keys)
    said = _assert_one_error_line(checked, "models.orphan.providers[0].provider", "'nosuch'")
    for args in (["models"], ["models", "--json"], ["models", "--markdown"]):
        listed = _invoke(*args, "--config", str(config), env=NO_KEYS)
        assert _assert_one_error_line(listed) == said, args
        assert "orphan" not in listed.stdout
    config.write_text("")  # the shipped catalog: listed, with no provider key set
    listed = _invoke("models", "--markdown", "--config", str(config), env=NO_KEYS)
    assert listed.exit_code == 0, listed.output
    assert "gpt-image-2" in listed.stdout


# --- 8: options that would be ignored ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["models", "--json", "--markdown"], ("--json", "--markdown")),
        (["status", "--count", "3"], ("--count", "--watch")),
        (["status", "--interval", "2"], ("--interval", "--watch")),
        (["status", "--watch", "--json"], ("--json", "--watch")),
    ],
)
def test_an_option_that_would_be_ignored_is_refused_naming_it(
    args: list[str], names: tuple[str, ...]
) -> None:
    """Each was accepted, one of the options silently ignored."""
    dead = "http://127.0.0.1:9"  # never asked: refused before any request
    extra = ["--url", dead] if args[0] == "status" else []
    _assert_one_error_line(_invoke(*args, *extra), *names)


# --- serve with a shared state whose credentials Redis refuses ---------------------------------


@pytest.mark.slow
def test_serve_with_credentials_redis_refuses_is_one_line_and_closes_what_it_opened(
    tmp_path: Path,
) -> None:
    """Was a replica that started, ready and degraded for good; and a context that failed to
    start left the ones before it unclosed (an asyncgen traceback at exit)."""
    from tests.helpers.redis_service import REDIS_URL, require_redis

    host_port = require_redis(REDIS_URL).split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    env = {**os.environ, "IMAGEROUTER_SERVER_STATE": f"redis://nobody:pw-4711@{host_port}/0"}
    command = [sys.executable, "-m", "imagerouter", "serve", "--farm", "demo", "--port", "0"]
    done = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "serving on" not in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: server.state: Redis at redis://nobody:***@"), errors[0]
    assert "pw-4711" not in done.stderr


@pytest.mark.parametrize("command", ["status", "migrate"])
def test_db_names_the_store_it_cannot_reach(command: str) -> None:
    """It said ``[Errno 111] Connect call failed ('127.0.0.1', P)``, not which store."""
    pytest.importorskip("asyncpg")
    from tests.helpers.net import free_port

    store = f"postgresql://admin:pw-0815@127.0.0.1:{free_port()}/test"
    result = _invoke("db", command, "--store", store)
    shown = store.replace("pw-0815", "***")
    _assert_one_error_line(result, f"error: {shown}: ")
    assert "pw-0815" not in result.output


def test_generate_says_a_url_that_is_no_imagerouter_server_is_not_one() -> None:
    """A server that is not imagerouter (http.server answers POST with a 501 HTML page): one
    line saying so, not that server's error as if it were the API's."""
    pytest.importorskip("httpx")
    with _web_server(_WebPage) as url:
        result = _invoke("generate", "a cat", "--url", url, "--key", "ir_x_y")
    _assert_one_error_line(result, url, "did not answer as an imagerouter server", "501")
