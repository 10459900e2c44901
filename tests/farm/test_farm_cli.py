"""``python -m mockproviders`` serves until SIGTERM and announces how to reach it."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

import aiohttp


async def test_module_serves_with_tls_and_stops_on_sigterm(session: aiohttp.ClientSession) -> None:
    """The farm prints its URL and CA bundle, answers, and exits 0 on SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mockproviders",
        "--port",
        "0",
        "--tls",
        "--scenario",
        "fal-down",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert "listening on https://127.0.0.1:" in first
        url = first.split("listening on ", 1)[1].split()[0]
        lines = []
        while not lines or not lines[-1].startswith("stop with"):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip())
        bundle = next(line for line in lines if line.startswith("CA bundle: ")).split(": ", 1)[1]
        assert any("FAL_QUEUE_RUN_HOST=" in line for line in lines)
        context = ssl.create_default_context(cafile=bundle)
        stats = await session.get(f"{url}/_farm/providers", ssl=context)
        body = await stats.json()
        assert body["ca_bundle"] == bundle
        assert body["providers"]["fal"]["effective"]["down"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=20)
    assert process.returncode == 0
