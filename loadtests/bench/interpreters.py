"""What the interpreter costs the job path: the whole path run alternately under this venv's
CPython and another, the same code, the same host minutes.

    python -m loadtests.bench.interpreters [--other PATH] [--pairs 3]

Each run is ``bench_end_to_end --storage local`` (the whole path, one run, about 25 s) started
with one venv's Python, so that the server, the farm and the receiver all run on it. The runs
alternate, this venv first, so that the host's drift hits both alike. ``--other`` is another
CPython 3.11 or newer (default: the first ``python3`` on ``PATH`` that is not this venv's);
its venv is made once under ``loadtests/bench/.build/`` with the project installed as ``make``
installs it (a minute or two the first time).

Prints every run's done/s and server CPU a job, the medians and their ratio, and writes
``results/interpreters.json``. ``results/end_to_end.json`` is left as it was before the runs.
``make`` builds ``.venv`` on the distribution's CPython (Debian's: built with profile-guided
and link-time optimisation, linked statically) when there is one: this says what that buys
against, say, pyenv's plain source build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.bench.common import BUILD_DIR, PROJECT_ROOT, RESULTS_DIR, median, write_results

E2E = RESULTS_DIR / "end_to_end.json"
#: A run's figures kept from ``end_to_end.json``.
FIGURES = ("done_per_s", "server_cpu_ms_per_job", "farm_cpu_ms_per_job")


def describe(python: str) -> dict[str, str]:
    """The interpreter behind ``python`` (a shim, a link or a venv's): its real executable,
    its version and whether it is a venv's."""
    code = (
        "import json, sys; print(json.dumps({'executable': sys.executable, "
        "'base': getattr(sys, '_base_executable', sys.executable), "
        "'version': sys.version.split()[0], 'venv': sys.prefix != sys.base_prefix}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    info["real"] = os.path.realpath(info["base"] if info["venv"] else info["executable"])
    return info


def other_python(candidates: Sequence[str], ours: str) -> str | None:
    """The first of ``candidates`` (commands or paths) that runs a CPython 3.11+ whose real
    executable is not ``ours``; None if none does."""
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None:
            continue
        try:
            info = describe(found)
        except (OSError, subprocess.CalledProcessError, ValueError):
            continue
        major, minor = (int(part) for part in info["version"].split(".")[:2])
        if (major, minor) >= (3, 11) and info["real"] != ours:
            return found
    return None


def venv_for(python: str) -> Path:
    """A venv of ``python`` with the project installed (made the first time), its Python."""
    info = describe(python)
    home = BUILD_DIR / f"venv-{info['version']}-{Path(info['real']).parent.parent.name}"
    bin_python = home / "bin" / "python"
    if not (home / ".installed").exists():
        print(f"making {home} with {info['real']} ({info['version']}) ...", flush=True)
        subprocess.run([python, "-m", "venv", "--clear", str(home)], check=True)
        pip = [str(bin_python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{PROJECT_ROOT}[dev,all]"], check=True, cwd=PROJECT_ROOT)
        (home / ".installed").touch()
    return bin_python


def one_run(python: Path | str) -> dict[str, Any]:
    """One whole-path run under ``python``; its figures (FIGURES) and that interpreter."""
    command = [str(python), "-m", "loadtests.bench.bench_end_to_end", "--storage", "local"]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    result = json.loads(E2E.read_text())
    if not result.get("exact"):
        raise SystemExit(f"a run under {python} was not exact: {result.get('checks')}")
    return {name: result[name] for name in FIGURES}


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each interpreter's medians, and this one's over the other's."""
    medians = {
        label: {name: median([run[name] for run in its]) for name in FIGURES}
        for label, its in runs.items()
    }
    ours, other = medians["this"], medians["other"]
    return {
        "medians": medians,
        "ratios": {name: round(ours[name] / other[name], 3) for name in FIGURES},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="Another CPython 3.11+ (default: python3 on PATH).")
    parser.add_argument("--pairs", type=int, default=3, help="Runs under each interpreter.")
    args = parser.parse_args(argv)
    this = describe(sys.executable)
    other = args.other or other_python(["python3", "python3.11", "python3.12"], this["real"])
    if other is None:
        raise SystemExit("no other CPython 3.11+ found on PATH: give --other PATH")
    pythons = {"this": sys.executable, "other": str(venv_for(other))}
    about = {label: describe(python) for label, python in pythons.items()}
    kept = E2E.read_bytes() if E2E.exists() else None
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
    try:
        for pair in range(1, args.pairs + 1):
            for label, python in pythons.items():
                run = one_run(python)
                runs[label].append(run)
                print(
                    f"pair {pair}, {label} ({about[label]['real']} {about[label]['version']}): "
                    f"{run['done_per_s']} done/s, server {run['server_cpu_ms_per_job']} ms "
                    f"a job, farm {run['farm_cpu_ms_per_job']} ms",
                    flush=True,
                )
    finally:
        if kept is not None:
            E2E.write_bytes(kept)
    result = {
        "benchmark": "interpreters",
        "interpreters": {
            label: {"executable": info["real"], "version": info["version"]}
            for label, info in about.items()
        },
        "runs": runs,
        **summary(runs),
    }
    for label in ("this", "other"):
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result["medians"][label].items())
        print(f"median, {label}: {shown}")
    print("this / other:", ", ".join(f"{k} {v}" for k, v in result["ratios"].items()))
    print(f"wrote {write_results('interpreters', result)}")


if __name__ == "__main__":
    main()
