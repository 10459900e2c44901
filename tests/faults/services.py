"""PostgreSQL and Redis servers of the fault tests' own: each started from its binaries in a
temporary directory on a free loopback port, so a test can restart it, kill its sessions or
pause it (SIGSTOP) without touching the shared instances other tests use. Each is stopped by
its pid when the fixture that started it ends.

Without the binaries the tests skip, except under ``CI=true``, where that is a failure."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.net import free_port

__all__ = ["OwnPostgres", "OwnRedis", "find_binary", "require_root_for_tmpfs"]


def _missing(what: str) -> None:
    message = f"{what} is needed by the fault tests"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it", pytrace=False)
    pytest.skip(message)


def find_binary(name: str, patterns: tuple[str, ...] = ()) -> str:
    """The path of executable ``name``: on PATH or under one of ``patterns`` (globs); skip the
    test (fail it under CI=true) when there is none."""
    found = shutil.which(name)
    if found is None:
        for pattern in patterns:
            hits = sorted(glob.glob(pattern))
            if hits:
                found = hits[-1]
                break
    if found is None:
        _missing(f"the {name!r} executable")
    assert found is not None
    return found


def require_root_for_tmpfs() -> None:
    """Mounting a tmpfs needs root; skip (fail under CI=true) otherwise."""
    if os.geteuid() != 0:
        _missing("root (to mount a small tmpfs)")


def _wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory of its own (initdb, trust auth, loopback
    only, its socket in that directory), run as the ``postgres`` OS user when we are root
    (initdb refuses root).

    ``restart(down_s)`` stops it (fast: every session is cut) and starts it again after
    ``down_s``; ``terminate(application_name)`` kills the matching sessions as
    ``pg_terminate_backend`` does.
    """

    def __init__(self, prefix: str = "irfaults-pg") -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        self.bin = Path(found[-1] if found else find_binary("pg_ctl")).parent
        # its own directory right under the temp dir: the postgres user must reach it
        self.root = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            try:
                pwd.getpwnam(self._user)
            except KeyError:
                _missing("the 'postgres' OS user (initdb refuses to run as root)")

    @property
    def url(self) -> str:
        """The ``test`` database's URL."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _run(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=True
        )

    def start_cluster(self) -> OwnPostgres:
        """initdb, start, and create the ``test`` database."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            info = pwd.getpwnam(self._user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        self.psql("CREATE DATABASE test")
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; its output."""
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-At",
            "-c",
            sql,
            timeout_s=30,
        ).stdout

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def running(self) -> bool:
        """True while the server answers ``pg_ctl status``."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status", timeout_s=10)
        except subprocess.CalledProcessError:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: every session is cut; ``immediate``: a crash)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self, down_s: float, mode: str = "fast") -> None:
        """Stop, stay down for ``down_s`` seconds, start again."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def terminate(self, application_name: str = "imagerouter") -> int:
        """``pg_terminate_backend`` every session of ``application_name``; how many."""
        out = self.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = '{application_name}' AND pid <> pg_backend_pid()"
        )
        return int(out.strip() or 0)

    def close(self) -> None:
        """Stop the server for good and remove its files."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    """A ``redis-server`` on a free loopback port, keeping nothing on disk. ``restart(down_s)``
    stops it (its data is gone) and starts it again; ``pause()``/``resume()`` SIGSTOP and
    SIGCONT it: connections stay open and silent."""

    def __init__(self, root: Path) -> None:
        self.binary = find_binary("redis-server")
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        """Start it and wait until its port answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--protected-mode",
            "yes",
        ]
        with (self.root / "redis.log").open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        if not _wait_port(self.port, 10):
            raise AssertionError(f"redis-server did not listen on {self.port}")
        return self

    def stop(self) -> None:
        """Stop it (SIGCONT first if paused, then SIGTERM, SIGKILL if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if self.paused:
            proc.send_signal(signal.SIGCONT)
            self.paused = False
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, down_s: float) -> None:
        """Stop, stay down for ``down_s`` seconds, start again (empty)."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the process answers nothing but its connections stay open."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False
