"""Other official and popular clients of OpenAI's Images API against the OpenAI-compatible
route, over real HTTP on loopback: the Node ``openai`` SDK (installed from npm into pytest's
cache, run with the system's node) and LiteLLM.

Without node or npm the Node test is skipped on a developer's machine and fails in CI
(``CI=true``), which must have them (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imagerouter.server.openai_views import JOB_ID_HEADER
from tests.helpers.api import Api

SCRIPT = Path(__file__).parent / "clients" / "openai_node.mjs"
#: The Node SDK's major version the script is written for.
NODE_SDK = "openai@7"
PNG_HEX = b"\x89PNG\r\n\x1a\n".hex()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the Node SDK test")
    pytest.skip(reason)


def _node_sdk(cache: pytest.Cache | None, scratch: Path) -> Path:
    """A directory whose node_modules holds the official ``openai`` package (installed once,
    then reused from pytest's cache; in ``scratch`` when the cache plugin is off)."""
    if not (shutil.which("node") and shutil.which("npm")):
        _unavailable("node and npm are not installed")
    root = cache.mkdir("openai-node-sdk") if cache is not None else scratch
    if not (root / "node_modules" / "openai" / "package.json").exists():
        try:
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--silent",
                    "--prefix",
                    str(root),
                    NODE_SDK,
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"npm install {NODE_SDK} failed: {exc}")
    return root


@pytest.mark.slow
async def test_the_official_node_sdk_reads_what_openai_would_send(
    api: Api, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    """gpt-image-1: data[0].b64_json is a PNG, usage/size/quality are there, the job header is
    readable; dall-e-3: an absolute url and revised_prompt; response_format on a GPT image
    model: the SDK's BadRequestError with OpenAI's code and param."""
    root = _node_sdk(getattr(pytestconfig, "cache", None), tmp_path)
    token = await api.key(credits=300)
    script = root / SCRIPT.name  # beside node_modules, so that `import "openai"` resolves
    script.write_text(SCRIPT.read_text())
    env = {
        **os.environ,
        "IMAGEROUTER_BASE_URL": str(api.client.make_url("/v1")),
        "IMAGEROUTER_KEY": token,
    }
    process = await asyncio.create_subprocess_exec(
        "node", str(script), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["png"] == PNG_HEX
    assert seen["url"] is None
    assert (seen["size"], seen["quality"], seen["output_format"], seen["background"]) == (
        "1024x1024",
        "low",
        "png",
        "opaque",
    )
    assert seen["usage"]["output_tokens"] == 272
    assert seen["usage"]["total_tokens"] == seen["usage"]["input_tokens"] + 272
    job = await api.client.get(f"/v1/jobs/{seen['job_id']}", headers=api.auth(token))
    assert (await job.json())["status"] == "completed"
    assert seen["dalle_url"].startswith(str(api.client.make_url("/v1/media/")))
    assert seen["dalle_revised_prompt"] == "a red fox"
    assert seen["refused"] == {
        "status": 400,
        "code": "unknown_parameter",
        "param": "response_format",
        "type": "invalid_request_error",
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # LiteLLM's own pydantic TypedDict notes
async def test_litellm_as_a_client(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's image_generation with ``openai/gpt-image-1`` and our api_base gets the PNG,
    the usage and the job header (LiteLLM keeps response headers in _hidden_params)."""
    # LiteLLM fetches a price map from the network at import unless told to use its own copy.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    token = await api.key(credits=200)
    answer = await litellm.aimage_generation(
        model="openai/gpt-image-1",
        prompt="a lighthouse",
        size="1024x1024",
        quality="low",
        api_base=str(api.client.make_url("/v1")),
        api_key=token,
    )
    assert base64.b64decode(answer.data[0].b64_json).startswith(b"\x89PNG")
    assert answer.data[0].url is None
    assert answer.usage.output_tokens == 272
    assert answer.size == "1024x1024"
    job_id = answer._hidden_params["headers"][JOB_ID_HEADER]
    job = await api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(token))
    assert (await job.json())["status"] == "completed"
