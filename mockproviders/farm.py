"""``Farm``: the mock provider farm as an async context manager, on one loopback port.

::

    async with Farm(load_scenario("demo"), tls=True) as farm:
        print(farm.base_url("acme"))  # hand it to the provider's SDK
        farm.set_faults("acme", {"down": True})
        print(farm.stats()["providers"]["acme"]["by_status"])

The farm knows no provider by name: it serves the adapters it is given, by default every one
the loaded plugins register through ``register_farm_adapters`` (the built-in providers' too).
It owns its ``web.AppRunner``, its site and (with TLS) its CA bundle file, and closes all of
them on exit (or :meth:`Farm.aclose`, after :meth:`Farm.start`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from imagerouter import AsyncResource
from imagerouter.clock import Clock
from imagerouter.extras import require
from mockproviders.adapter import FarmAdapter
from mockproviders.app import create_farm_app
from mockproviders.profile import FaultProfile
from mockproviders.scenario import Scenario, load_scenario
from mockproviders.state import FarmState

if TYPE_CHECKING:  # trustme (the farm extra) is imported when a farm starts with TLS
    from mockproviders.tls import FarmTLS

__all__ = ["Farm", "plugin_adapters"]

#: Seconds the farm waits for in-flight answers when it stops.
SHUTDOWN_TIMEOUT_S = 2.0


def plugin_adapters() -> list[FarmAdapter]:
    """Fresh adapters from every loaded plugin's ``register_farm_adapters`` hook (entry points
    of group ``imagerouter``, limited by ``IMAGEROUTER_LOAD_PLUGINS``; a broken plugin is
    logged and skipped)."""
    from imagerouter.plugins import load_plugins

    return load_plugins().farm_adapters


class Farm(AsyncResource):
    """Provider APIs (one adapter each) and the control API on one port.

    Args:
        scenario: a :class:`Scenario`, a scenario path or bundled name, or None (no faults).
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one.
        tls: serve HTTPS with a throwaway CA (for an SDK that speaks only https).
        adapters: the provider APIs to serve; None (the default) serves
            :func:`plugin_adapters`. To add one beside them:
            ``Farm(adapters=[*plugin_adapters(), AcmeAPI()])``.
        clock: the clock the engine, stats and jobs read (the real one by default).
    """

    def __init__(
        self,
        scenario: Scenario | str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        *,
        adapters: Sequence[FarmAdapter] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if scenario is None:
            scenario = Scenario()
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self.scenario = scenario
        if adapters is None:
            adapters = plugin_adapters()
        self._state = FarmState(scenario, adapters, clock)
        self._host, self._port, self._tls = host, port, tls
        self._runner: web.AppRunner | None = None
        self._tls_material: FarmTLS | None = None
        self._url: str | None = None

    async def start(self) -> None:
        """Listen; after this ``url`` and every other accessor work.

        Raises MissingExtra without the ``farm`` extra (its metrics and TLS need it).
        """
        if self._runner is not None:
            raise RuntimeError("the farm is already running")
        require("farm", "the mock provider farm")
        ssl_context = None
        if self._tls:
            from mockproviders.tls import FarmTLS

            self._tls_material = FarmTLS(hosts=("127.0.0.1", "localhost", self._host))
            self._state.ca_bundle = self._tls_material.ca_bundle
            ssl_context = self._tls_material.server_context()
        runner = web.AppRunner(
            create_farm_app(self._state),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._close_tls()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = self._host if self._host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        self._url = f"{'https' if self._tls else 'http'}://{host}:{port}"

    async def aclose(self) -> None:
        """Stop listening, let held requests go, and delete the CA bundle."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            self._close_tls()

    def _close_tls(self) -> None:
        if self._tls_material is not None:
            self._tls_material.close()
            self._tls_material = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with TLS)."""
        if self._url is None:
            raise RuntimeError("the farm is not running; use `async with Farm(...)`")
        return self._url

    @property
    def ca_bundle(self) -> str | None:
        """With TLS: a PEM file of the system CAs plus the farm's CA (for ``SSL_CERT_FILE``)."""
        return self._state.ca_bundle

    @property
    def state(self) -> FarmState:
        """The live state: adapters, fault engine, stats and jobs."""
        return self._state

    def base_url(self, provider: str) -> str:
        """The base URL for a provider's SDK: the farm's URL, the adapter's prefix and
        ``sdk_path``."""
        return self._state.adapter(provider).base_url(self.url)

    def providers(self) -> dict[str, Any]:
        """The same dict as ``GET /_farm/providers``."""
        return self._state.providers(self.url)

    def stats(self) -> dict[str, Any]:
        """The same dict as ``GET /_farm/stats``."""
        return self._state.stats_snapshot()

    def set_faults(self, provider: str, profile: FaultProfile | Mapping[str, Any]) -> None:
        """Replace a provider's live base profile, like ``PUT /_farm/providers/{name}/faults``.

        Raises:
            KeyError: for an unknown provider.
            imagerouter.errors.ConfigError: for an invalid profile (names the field).
        """
        self._state.set_faults(provider, profile)

    def reset(self) -> None:
        """Zero the counters and restart the scenario clock, like ``POST /_farm/reset``."""
        self._state.reset()
