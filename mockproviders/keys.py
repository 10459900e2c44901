"""Every typed ``web.AppKey`` of the farm's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from mockproviders.state import FarmState

__all__ = ["FARM_STATE"]

#: The live farm: adapters, fault engine, stats and jobs.
FARM_STATE = web.AppKey("mockproviders.farm_state", FarmState)
