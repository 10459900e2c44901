"""The whole plugin contract on one page.

Pluggy calls hooks synchronously, so hooks *register* things; the async work lives on the
objects they register (a :class:`~imagerouter.provider.Provider`'s ``async def generate``).
Implement a hook with ``@imagerouter.hookimpl`` in a module registered under the entry-point
group ``imagerouter`` (or dropped into a plugins directory); an implementation may accept a
subset of the arguments a spec names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from imagerouter.provider import Provider

__all__ = ["hookimpl", "hookspec"]

PROJECT = "imagerouter"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration hooks: called once, when the plugin manager loads ---------------------------


@hookspec
def register_providers(register: Callable[[type[Provider]], None]) -> None:
    """Register provider classes: call ``register(MyProvider)`` once per class.

    Fires once at start-up, before any router is built. Each class must set a unique
    ``provider_id``; a duplicate id is reported against the plugin that registered it second
    and that class is skipped. Returns nothing.
    """


@hookspec
def register_farm_adapters(register: Callable[[Any], None]) -> None:
    """Register mock-farm adapters: call ``register(MyAdapter())`` for each provider wire format.

    Fires when a :class:`mockproviders.Farm` is built without explicit ``adapters`` (the farm
    serves every adapter the plugins register: it knows no provider by name), and when the
    conformance kit looks for a plugin's adapter. Import the adapter module inside the hook, so
    a production router never imports the farm. An adapter describes only the wire format
    (routes, request fields, response and error bodies); the farm's fault engine, rate limits,
    latency, phases and stats apply to it automatically. Returns nothing.
    """
