"""The dashboard in a real browser (Playwright driving Debian's Chromium) while fal goes down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from tests.observe.conftest import ADMIN_KEY, ApiFactory, write_scenario

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
#: Bounds of the job loop that drives traffic while the page watches.
MAX_JOBS, MAX_SECONDS, JOB_INTERVAL_S = 1500, 90.0, 0.03
WAIT_MS = 30_000


def _need_browser() -> None:
    """Skip without Chromium or Playwright, except under CI=true, where that is a failure."""
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing: pip install -e '.[dev]'"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"dashboard browser test cannot run under CI: {reason}")
    pytest.skip(reason)


async def _drive_jobs(url: str, token: str, stop: asyncio.Event) -> int:
    """Submit flux-dev jobs at a steady pace until ``stop``, MAX_JOBS or MAX_SECONDS."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + MAX_SECONDS
    sent = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        while not stop.is_set() and sent < MAX_JOBS and time.monotonic() < deadline:
            body = {"model": "flux-dev", "prompt": f"a harbour at dusk #{sent}"}
            async with session.post(f"{url}/v1/jobs", json=body) as answer:
                assert answer.status == 202, await answer.text()
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), JOB_INTERVAL_S)
    return sent


def _card(provider: str, *, busy: bool) -> str:
    """A selector for the provider's card with jobs/s above zero (``busy``) or at zero.

    Selectors, not ``wait_for_function``: the page's CSP forbids the eval that needs."""
    card = f'.card[data-provider="{provider}"][data-rate]'
    return f'{card}:not([data-rate="0.00"])' if busy else f'{card}[data-rate="0.00"]'


@pytest.mark.slow
async def test_dashboard_shows_fal_breaker_open_and_traffic_moving_to_wavespeed(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """Signed in with the admin key, the page shows traffic on fal; after the farm panel takes
    fal down, fal's card turns open (with a probe countdown) and WaveSpeed's jobs/s rises while
    fal's drops to zero; a screenshot is kept in tests/observe/artifacts/."""
    _need_browser()
    from playwright.async_api import async_playwright

    api = await make_api(farm=str(write_scenario(tmp_path / "scenario.toml")), workers=16)
    token = await api.key()
    url = str(api.client.server.make_url("")).rstrip("/")
    stop = asyncio.Event()
    driver = asyncio.create_task(_drive_jobs(url, token, stop))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-fal-down.png"
    errors: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1100})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if "Security Policy" in m.text else None,
                )
                await page.goto(f"{url}/dashboard")
                await page.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
                await page.fill("#admin-key", ADMIN_KEY)
                await page.click("#login-form button[type=submit]")
                await page.wait_for_selector('#connection[data-state="live"]', timeout=WAIT_MS)
                # the webhook panel: attempts and receivers (none registered here)
                await page.wait_for_selector("#webhooks:not([hidden])", timeout=WAIT_MS)
                totals = await page.text_content("#webhooks-totals")
                assert totals is not None
                assert "attempts in flight" in totals
                assert "0 receivers" in totals
                assert "their limits shared by 1 replica;" in totals

                # Healthy: fal (first in flux-dev's order) serves, WaveSpeed idles.
                await page.wait_for_selector(_card("fal", busy=True), timeout=WAIT_MS)
                assert await page.query_selector(_card("wavespeed", busy=False)) is not None
                assert await page.get_attribute('.card[data-provider="fal"]', "data-breaker") == (
                    "closed"
                )

                # The farm panel takes fal down through the admin proxy.
                await page.click('[data-farm-provider="fal"][data-preset="down"]', timeout=WAIT_MS)
                # the proxy's answer first: a lost click and a refused PUT fail here, apart
                await page.wait_for_selector('#farm-message:text-matches("^fal:")', timeout=WAIT_MS)
                message = await page.text_content("#farm-message")
                assert message is not None
                assert "fault profile set" in message, message
                await page.wait_for_selector(
                    'tr[data-farm="fal"][data-down="true"]', timeout=WAIT_MS
                )
                await page.wait_for_selector(
                    '.card[data-provider="fal"][data-breaker="open"]', timeout=WAIT_MS
                )
                probe = await page.text_content('.card[data-provider="fal"] dd:nth-of-type(2)')
                assert probe is not None
                assert probe.startswith("in ")  # a countdown to the next probe
                await page.wait_for_selector(_card("wavespeed", busy=True), timeout=WAIT_MS)
                await page.wait_for_selector(_card("fal", busy=False), timeout=WAIT_MS)
                await page.wait_for_selector(
                    '#jobs tr[data-provider="wavespeed"][data-status="completed"]', timeout=WAIT_MS
                )
                await page.screenshot(path=str(shot), full_page=True)
            finally:
                await browser.close()
    finally:
        stop.set()
        sent = await driver
    print(f"\ndashboard screenshot: {shot} ({sent} jobs driven)")
    assert errors == []
    assert shot.stat().st_size > 10_000


def test_missing_chromium_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without Chromium the browser test is skipped, unless CI=true, where it fails."""
    monkeypatch.setattr(f"{__name__}.CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _need_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI"):
        _need_browser()
