"""The farm's control API (JSON), the contract load tests and tools drive the farm through.

- ``GET /_farm/providers``: per provider, ``base_url`` for its SDK (plus what its adapter's
  ``describe`` adds), its base ``faults``, its ``phases`` and the ``effective`` profile now; plus
  ``ca_bundle`` when the farm serves TLS.
- ``PUT /_farm/providers/{name}/faults``: replace that provider's live base profile (and its
  phases, if the body sets ``phases``); 422 with the field path for a bad body, 404 for an
  unknown provider.
- ``GET /_farm/stats``: ``{"providers": {name: {"requests", "by_status", "inside_retry_after",
  "inside_retry_after_raw", "retry_after_issued", "keys": {key: {...same...}}}}}``.
- ``POST /_farm/reset``: zero the counters and restart the scenario clock.
- ``GET /_farm/media/{w}x{h}/{digest}.png``: the generated images.
- ``GET /_farm/media/video/{w}x{h}/{seconds}/{digest}[-{bytes}].mp4``: the generated videos.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from mockproviders.keys import FARM_STATE
from mockproviders.media import MEDIA_ROUTE, media_handler
from mockproviders.profile import FaultProfile, validation_problems
from mockproviders.videos import VIDEO_MEDIA_ROUTE, video_handler

__all__ = ["add_control_routes"]


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def get_providers(request: web.Request) -> web.Response:
    """``GET /_farm/providers``."""
    return web.json_response(request.app[FARM_STATE].providers(_origin(request)))


async def put_faults(request: web.Request) -> web.Response:
    """``PUT /_farm/providers/{name}/faults``: replace the live profile of one provider."""
    state = request.app[FARM_STATE]
    name = request.match_info["name"]
    if name not in state.adapters:
        return web.json_response(
            {"error": f"unknown provider {name!r}", "providers": list(state.adapters)},
            status=404,
        )
    try:
        data = await request.json()
    except ValueError:
        return _unprocessable([{"field": "", "reason": "the body is not valid JSON"}])
    try:
        profile = FaultProfile.model_validate(data)
    except ValidationError as exc:
        return _unprocessable(validation_problems(exc))
    state.engine.set_faults(name, profile)
    return web.json_response(state.providers(_origin(request))["providers"][name])


def _unprocessable(problems: list[dict[str, str]]) -> web.Response:
    first = problems[0]
    return web.json_response(
        {
            "error": "invalid fault profile",
            "field": first["field"],
            "reason": first["reason"],
            "problems": problems,
        },
        status=422,
    )


async def get_stats(request: web.Request) -> web.Response:
    """``GET /_farm/stats``."""
    return web.json_response(request.app[FARM_STATE].stats_snapshot())


async def post_reset(request: web.Request) -> web.Response:
    """``POST /_farm/reset``: zero the counters, restart the scenario clock."""
    state = request.app[FARM_STATE]
    state.reset()
    return web.json_response({"reset": True, "clock_s": round(state.engine.clock_s(), 3)})


def add_control_routes(app: web.Application) -> None:
    """Mount the control API and the image host under ``/_farm``."""
    app.router.add_get("/_farm/providers", get_providers)
    app.router.add_put("/_farm/providers/{name}/faults", put_faults)
    app.router.add_get("/_farm/stats", get_stats)
    app.router.add_post("/_farm/reset", post_reset)
    state = app[FARM_STATE]
    app.router.add_get(VIDEO_MEDIA_ROUTE, video_handler(lambda: state.videos))
    app.router.add_get(MEDIA_ROUTE, media_handler(app[FARM_STATE].pngs))
    # prometheus-client (the farm extra) is imported when a farm app is built, not with the
    # package: the simulator and plugins' farm adapters import mockproviders without it.
    from mockproviders.metrics import add_metrics_route

    add_metrics_route(app)
