"""The optional parts of imagerouter and what each needs installed: ``require`` at their doors.

``pip install imagerouter-framework`` brings the routing library, its provider plugins and the
small CLI (``models``, ``check-config``, ``plugins``, ``new-provider``). Everything heavier is an
extra of ``pyproject.toml``, named for what it enables; the command or backend that needs one
calls :func:`require` before importing it, so that a missing extra fails with the one line that
fixes it instead of an ``ImportError`` from deep inside (one line; wrapped here)::

    imagerouter serve needs aiohttp-sse, prometheus-client:
    pip install 'imagerouter-framework[server]'

:data:`EXTRAS` lists, per extra, the modules checked (each with the distribution that provides
it) and the extras it includes; a test keeps it in step with ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from imagerouter.errors import MissingExtra

__all__ = ["EXTRAS", "Extra", "missing", "require"]


@dataclass(frozen=True)
class Extra:
    """One extra: ``modules`` maps an importable module to the distribution that provides
    it; ``includes`` names other extras this one pulls in."""

    modules: dict[str, str]
    includes: tuple[str, ...] = ()


EXTRAS: dict[str, Extra] = {
    # the job API: imagerouter serve, keys, credits
    "server": Extra({"aiohttp_sse": "aiohttp-sse", "prometheus_client": "prometheus-client"}),
    # store = "postgresql://…" shared by replicas; imagerouter db on PostgreSQL
    "postgres": Extra({"asyncpg": "asyncpg"}),
    # state = "redis://…": breakers, cooldowns and budgets shared by replicas
    "redis": Extra({"redis": "redis"}),
    # [server.storage] backend = "s3"
    "s3": Extra({"boto3": "boto3"}),
    # imagerouter.client (the SDK), imagerouter status
    "client": Extra({"httpx": "httpx", "httpx_sse": "httpx-sse"}),
    # the mock provider farm: imagerouter farm, serve --farm, demo, the conformance kit
    # (certifi is in the extra too, but optional: without it the farm's CA bundle for --tls
    # starts from OpenSSL's default file)
    "farm": Extra({"trustme": "trustme", "prometheus_client": "prometheus-client"}),
    # imagerouter simulate
    "simulate": Extra({"numpy": "numpy"}),
    # PNG charts in the simulator's and the load test's reports
    "charts": Extra({"matplotlib": "matplotlib"}),
    # imagerouter loadtest: Locust, and the farm, server and client it drives
    "loadtest": Extra({"locust": "locust"}, includes=("server", "farm", "charts", "client")),
}


def _modules(extra: str) -> dict[str, str]:
    """Every module ``extra`` needs, those of the extras it includes too."""
    spec = EXTRAS[extra]
    modules: dict[str, str] = {}
    for included in spec.includes:
        modules |= _modules(included)
    return modules | spec.modules


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a __spec__: imported, so there
        return True


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` (or of several, as pip writes them: ``"server,farm"``)
    that are not installed; none when it is usable."""
    modules: dict[str, str] = {}
    for name in extra.split(","):
        if name not in EXTRAS:
            raise KeyError(f"unknown extra {name!r} (known: {', '.join(EXTRAS)})")
        modules |= _modules(name)
    return sorted({dist for module, dist in modules.items() if not _installed(module)})


def require(extra: str, what: str) -> None:
    """Raise :class:`~imagerouter.errors.MissingExtra` unless every module of ``extra`` (one
    name, or several as ``"server,farm"``) is installed; ``what`` names what needs it
    (``"imagerouter serve"``), the message the pip install that fixes it."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(extra, what, absent)
