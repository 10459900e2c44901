"""Without extras: the library and the core commands work, and a command that needs an extra
names the one to install. Here, every extra's modules are made unimportable in a subprocess,
which catches a module-level import of one on the way to a door."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagerouter.extras import EXTRAS

#: Every module an extra brings (certifi is the farm's optional one; botocore comes with boto3).
EXTRA_MODULES = sorted(
    {m for extra in EXTRAS.values() for m in extra.modules} | {"certifi", "botocore", "gevent"}
)
SERVE_LINE = (
    "error: imagerouter serve needs aiohttp-sse, prometheus-client: "
    "pip install 'imagerouter[server]'"
)

#: Runs ``python -c PROBE args…`` with the extras' modules absent (None in sys.modules makes an
#: import fail and find_spec answer None, as when the distribution is not installed).
PROBE = f"""
import sys
for name in {EXTRA_MODULES!r}:
    sys.modules[name] = None
if sys.argv[1:] == ["--imports"]:
    import json, imagerouter.cli, mockproviders, imagerouter.testing.pytest_plugin
    from imagerouter import Router, load_plugins
    plugins = load_plugins()
    print(json.dumps({{"providers": sorted(plugins.providers),
                       "farm_adapters": len(plugins.farm_adapters),
                       "problems": [str(p) for p in plugins.problems]}}))
else:
    from imagerouter.cli import main
    main(sys.argv[1:], prog_name="imagerouter")
"""


def _without_extras(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "IMAGEROUTER_CONFIG"},
    )


@pytest.mark.slow
def test_without_the_extras_the_core_loads_and_serve_names_its_extra(tmp_path: Path) -> None:
    """The library, the CLI, the farm package (for plugins' farm adapters and the simulator)
    and the pytest plugin import; every plugin loads; ``models`` and ``plugins`` work; ``serve``
    stops at its door with the pip install."""
    loaded = _without_extras("--imports", cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    report = json.loads(loaded.stdout)
    assert report == {
        "providers": ["fal", "openai", "replicate", "wavespeed"],
        "farm_adapters": 1,
        "problems": [],
    }
    for command in (["models"], ["plugins"], ["--help"]):
        run = _without_extras(*command, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert "skipped" not in run.stderr
    serve = _without_extras("serve", "--port", "0", cwd=tmp_path)
    assert (serve.returncode, serve.stderr, serve.stdout) == (2, SERVE_LINE + "\n", "")
