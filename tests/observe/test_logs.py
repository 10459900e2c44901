"""A real ``imagerouter serve --farm`` writes its job logs as JSON lines, with no key or prompt."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imagerouter.auth import KEY_PREFIX
from tests.helpers.net import free_port
from tests.observe.conftest import write_scenario
from tests.polling import eventually_sync
from tests.store.pg import drop_schema, new_schema, require_postgres, with_schema

CLI = [sys.executable, "-m", "imagerouter"]
PROMPT = "a-very-private-prompt-4242 of a red fox"
ADMIN = "adm_logs_test_key_123456"


@contextmanager
def _serving(
    command: list[str], env: dict[str, str], port: int, stderr_path: Path
) -> Iterator[str]:
    """``command`` (a ``serve`` on ``port``) running with its stderr in ``stderr_path``, once
    it answers ``/readyz``; its URL. Stopped by SIGTERM afterwards."""
    url = f"http://127.0.0.1:{port}"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:

        def ready() -> bool:
            assert proc.poll() is None, stderr_path.read_text()
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        eventually_sync(ready, timeout_s=30, what="the server to be ready")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _call(url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
def test_serve_logs_json_lines_without_keys_or_prompts(tmp_path: Path) -> None:
    """With log_format=json at INFO, each job's attempts and its end are JSON lines carrying the
    job id, provider, outcome and latency; no API key, admin key or prompt appears."""
    data_dir = tmp_path / "data"
    scenario = write_scenario(tmp_path / "scenario.toml", fal='error_rates = { "503" = 1.0 }')
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "IMAGEROUTER_SERVER_LOG_FORMAT": "json",
        "IMAGEROUTER_SERVER_LOG_LEVEL": "INFO",
        "IMAGEROUTER_SERVER_ADMIN_KEY": ADMIN,
    }
    minted = subprocess.run(
        [*CLI, "keys", "create", "--account", "acme", "--credits", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**env, "IMAGEROUTER_SERVER_DATA_DIR": str(data_dir)},
    )
    token = minted.stdout.strip()
    stderr_path = tmp_path / "stderr.log"
    command = [*CLI, "serve", "--data-dir", str(data_dir), "--port", str(free_port())]
    with _serving([*command, "--farm", scenario], env, int(command[-1]), stderr_path) as url:
        job = _call(f"{url}/v1/jobs", token, {"model": "flux-dev", "prompt": PROMPT})
        eventually_sync(
            lambda: _call(f"{url}/v1/jobs/{job['id']}", token)["status"] == "completed",
            timeout_s=30,
            what="the job to complete",
        )
        assert _call(f"{url}/v1/admin/snapshot", ADMIN)["providers"]
        with pytest.raises(urllib.error.HTTPError):  # a rejected key must not be logged either
            _call(f"{url}/v1/jobs", f"{token[:-4]}zzzz", {"model": "flux-dev", "prompt": PROMPT})
    text = stderr_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    assert PROMPT not in text
    assert "private-prompt" not in text
    assert token not in text
    assert ADMIN not in text
    # not even the secret part: ir_<key id>_<token_urlsafe>, whose alphabet has "_" too
    secret = token.removeprefix(KEY_PREFIX).split("_", 1)[1]
    assert len(secret) >= 40
    assert secret not in text
    mine = [line for line in lines if line.get("job_id") == job["id"]]
    attempts = [
        (a["provider"], a["outcome"]) for a in mine if a["logger"] == "imagerouter.attempts"
    ]
    assert attempts == [("fal", "error"), ("wavespeed", "ok")]
    for line in mine:
        if line["logger"] == "imagerouter.attempts":
            assert isinstance(line["latency_ms"], float)
            assert line["level"] in ("info", "warning")
    end = [line for line in mine if line["logger"] == "imagerouter.jobs"]
    assert [(e["event"], e["status"], e["provider"]) for e in end] == [
        ("job completed", "completed", "wavespeed")
    ]
    assert all({"ts", "level", "logger", "event"} <= set(line) for line in lines)


@pytest.mark.slow
def test_serve_on_postgres_with_local_outputs_logs_only_json_lines(tmp_path: Path) -> None:
    """With log_format=json, a PostgreSQL store and outputs on the local disk, ``serve``
    warns that outputs are not shared as a JSON line, like every other line on stderr,
    from the start to the end."""
    base = require_postgres()
    schema = new_schema("irlogs")
    port = free_port()
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "IMAGEROUTER_SERVER_LOG_FORMAT": "json",
        "IMAGEROUTER_SERVER_LOG_LEVEL": "INFO",
        "IMAGEROUTER_SERVER_STORE": with_schema(base, schema),
    }
    scenario = write_scenario(tmp_path / "scenario.toml")
    command = [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    stderr_path = tmp_path / "stderr.log"
    try:
        with _serving([*command, "--farm", str(scenario)], env, port, stderr_path):
            pass
    finally:
        asyncio.run(drop_schema(base, schema))
    text = stderr_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}")
    warnings = [
        entry
        for entry in map(json.loads, lines)
        if "storage backend local" in entry["event"] and entry["level"] == "warning"
    ]
    assert len(warnings) == 1, text
