"""The README's video example runs as written: the official SDK against a server over the farm."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path

import pytest

from tests.helpers.api import Api
from tests.video.mp4check import parse_mp4

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    found = re.search(
        r"<!-- video-example:start -->\n```python\n(.*?)```\n<!-- video-example:end -->", text, re.S
    )
    assert found, "the README's video example markers are missing"
    return found[1]


async def test_the_readme_video_example_runs(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed with IMAGEROUTER_URL and IMAGEROUTER_API_KEY set: heron.mp4 is an 8 s MP4."""
    token = await api.key(credits=1000)
    monkeypatch.setenv("IMAGEROUTER_URL", str(api.client.make_url("")).rstrip("/"))
    monkeypatch.setenv("IMAGEROUTER_API_KEY", token)
    monkeypatch.chdir(tmp_path)
    code = compile(_example(), "README.md#video", "exec")

    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's Sora notice
            exec(code, {"__name__": "readme"})

    await asyncio.to_thread(run)
    facts = parse_mp4((tmp_path / "heron.mp4").read_bytes())
    assert facts.seconds == 8
    assert (facts.track_width, facts.track_height) == (1280, 720)
