"""The round-trip check fails with a message, never a crash, when a plugin's answer is not a
``ProviderOutput`` or its image URL does not answer 200 (here: refuses connections)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagerouter_fal import FalProvider

from imagerouter import GeneratedImage, ProviderOutput
from imagerouter.testing import Conformance, ConformanceFailure, run_conformance

MODEL = "openai/gpt-image-2"


class ReturnsADict(FalProvider):
    """Gets the image from the farm, then hands it back as a plain dict."""

    async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
        output = await super().generate(request, ctx)
        return {"images": [{"url": output.images[0].url}]}


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL whose port refuses connections: bound (so nothing else takes it) but
    never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/nothing.png"


def pointing_at(url: str) -> type[FalProvider]:
    """A plugin that generates at the farm, then answers with ``url`` as its image."""

    class PointsElsewhere(FalProvider):
        async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
            await super().generate(request, ctx)
            return ProviderOutput([GeneratedImage(url=url)])

    return PointsElsewhere


def round_trip_failure(provider_class: type[FalProvider]) -> str:
    """The round-trip check's failure message (the check must fail, not crash)."""
    report = run_conformance(provider_class, MODEL, only=["round-trip"])
    assert [result.check for result in report.failures] == ["round-trip"], report
    return report.failures[0].message


def test_an_answer_that_is_not_a_provider_output_fails_the_round_trip() -> None:
    """A dict where a ProviderOutput belongs is a failure naming what came back."""
    message = round_trip_failure(ReturnsADict)
    assert message.startswith(f"round trip of {MODEL!r} with no faults → expected a ProviderOutput")
    assert "dict" in message


def test_an_image_url_that_refuses_connections_fails_the_round_trip(refusing_url: str) -> None:
    """An image URL nothing answers at is a failure naming the URL and the error."""
    message = round_trip_failure(pointing_at(refusing_url))
    assert f"image 0: GET {refusing_url} got no answer: ClientConnectorError" in message


def test_an_image_url_that_answers_an_error_fails_the_round_trip() -> None:
    """A URL on the farm that is no image answers 4xx: the failure gives the status."""
    with Conformance(FalProvider, MODEL) as kit:
        assert kit.farm is not None
        url = kit.farm.providers()["providers"]["fal"]["base_url"] + "/no/such/image.png"
        kit.provider_class = pointing_at(url)
        with pytest.raises(ConformanceFailure) as caught:
            kit.run_check("round-trip")
    assert re.search(rf"image 0: GET {re.escape(url)} answered 4\d\d$", str(caught.value))


def test_pytest_reports_a_dict_answer_as_a_failed_round_trip(tmp_path: Path) -> None:
    """Through ProviderConformance the round-trip test fails with the message (no error from
    inside the kit)."""
    (tmp_path / "test_dict.py").write_text(
        textwrap.dedent(
            """
            from imagerouter_fal import FalProvider
            from imagerouter.testing import ProviderConformance

            class ReturnsADict(FalProvider):
                async def generate(self, request, ctx):
                    output = await super().generate(request, ctx)
                    return {"images": [{"url": output.images[0].url}]}

            class TestDict(ProviderConformance):
                provider_class = ReturnsADict
                model = "openai/gpt-image-2"
            """
        )
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "generate_round_trip",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "1 failed" in out
    assert "error" not in out.splitlines()[-1]
    assert "AttributeError" not in out
    assert "→ expected a ProviderOutput, got" in out


class ReturnsDictImages(FalProvider):
    """Wraps dicts, not GeneratedImages, in its ProviderOutput."""

    async def generate(self, request, ctx):  # type: ignore[no-untyped-def]
        output = await super().generate(request, ctx)
        return ProviderOutput([{"url": output.images[0].url}])  # type: ignore[list-item]


def test_images_the_router_would_refuse_fail_the_round_trip() -> None:
    """A ProviderOutput of dicts is a failure in the router's own words, not a crash."""
    message = round_trip_failure(ReturnsDictImages)
    assert message.endswith(
        "→ expected images the router takes, generate returned an image of type dict, "
        "not a GeneratedImage"
    )
