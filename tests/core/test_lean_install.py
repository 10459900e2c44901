"""``pip install imagerouter-framework`` without extras: none of the heavy dependencies come
along, the library and the core commands work, and a command that needs an extra names the one
to install.

Two ways: in this environment with every extra's modules made unimportable (quick, and it
catches a module-level import of one on the way to a door), and for real, in a fresh virtualenv
with the wheel installed from the package index (slow: it builds and installs)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from imagerouter.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
#: Every module an extra brings (certifi is the farm's optional one; botocore comes with boto3).
EXTRA_MODULES = sorted(
    {m for extra in EXTRAS.values() for m in extra.modules} | {"certifi", "botocore", "gevent"}
)
#: Distributions a plain install must not bring.
HEAVY = {
    *("matplotlib", "boto3", "asyncpg", "redis", "locust", "numpy"),
    *("httpx", "httpx-sse", "aiohttp-sse", "prometheus-client", "trustme"),
}
SERVE_LINE = (
    "error: imagerouter serve needs aiohttp-sse, prometheus-client: "
    "pip install 'imagerouter-framework[server]'"
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
        "farm_adapters": 4,  # every built-in provider's wire format comes from its plugin
        "problems": [],
    }
    config = tmp_path / "router.toml"  # check-config reads [server] too, without the extra
    keys = "".join(f"[providers.{n}]\napi_key = 'k'\n" for n in ("fal", "wavespeed", "openai"))
    config.write_text(keys)
    checked = ["check-config", "--config", str(config)]
    for command in (["models"], ["plugins"], ["--help"], checked):
        run = _without_extras(*command, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert "skipped" not in run.stderr
    assert "config OK" in _without_extras(*checked, cwd=tmp_path).stdout
    serve = _without_extras("serve", "--port", "0", cwd=tmp_path)
    assert (serve.returncode, serve.stderr, serve.stdout) == (2, SERVE_LINE + "\n", "")


_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Network is unreachable|"
    r"Temporary failure in name resolution|Could not fetch URL"
)


@pytest.mark.slow
def test_a_plain_pip_install_is_lean(tmp_path: Path) -> None:
    """The wheel, pip-installed without extras into a fresh virtualenv, brings none of the
    heavy dependencies; ``from imagerouter import Router`` works there, and ``imagerouter
    serve`` exits 2 with the pip install of the server extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("IMAGEROUTER_CONFIG", None)

    def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )

    # Build the wheel here (hatchling is a dev dependency), install it with this pip into a
    # venv that has none: ``pip --python`` (pip ≥ 22.3); pip's cache makes repeats fast.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    built = run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
        "-w", str(tmp_path / "dist"), str(ROOT),
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("imagerouter_framework-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", str(wheel))
    if install.returncode != 0 and _NETWORK.search(install.stderr):
        pytest.skip(f"no package index reachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stdout + install.stderr

    listed = run(
        python,
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted(d.metadata['Name'].lower().replace('_', '-') "
        "for d in m.distributions())))",
    )
    installed = set(json.loads(listed.stdout))
    assert "imagerouter-framework" in installed
    assert {"aiohttp", "pluggy", "pydantic", "click", "rich"} <= installed
    assert installed.isdisjoint(HEAVY), sorted(installed & HEAVY)

    library = run(python, "-c", "from imagerouter import Router; print(Router.__name__)")
    assert (library.returncode, library.stdout) == (0, "Router\n"), library.stderr

    serve = run(str(env_dir / "bin" / "imagerouter"), "serve", "--port", "0", timeout=60)
    assert (serve.returncode, serve.stderr, serve.stdout) == (2, SERVE_LINE + "\n", "")
