"""The dashboard's server side: admin protection, snapshots, the SSE stream, the farm proxy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from imagerouter.server.dashboard import COOKIE
from mockproviders import Farm
from tests.observe.conftest import ADMIN_KEY, ApiFactory, write_scenario

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_admin_routes_are_off_without_an_admin_key(make_api: ApiFactory, farm: Farm) -> None:
    """With no admin_key set, every admin route answers 403 and says which setting opens it."""
    api = await make_api(farm, admin_key=None)
    for method, path in [
        ("GET", "/v1/admin/snapshot"),
        ("GET", "/v1/admin/stream"),
        ("POST", "/v1/admin/session"),
        ("GET", "/v1/admin/farm"),
    ]:
        answer = await api.client.request(method, path, headers=ADMIN)
        assert answer.status == 403, path
        assert "admin_key" in (await answer.json())["error"]["message"]


async def test_admin_routes_refuse_api_keys_and_wrong_keys(
    make_api: ApiFactory, farm: Farm
) -> None:
    """An ordinary API key, a wrong key, or a forged cookie gets 401; the admin key gets in."""
    api = await make_api(farm)
    token = await api.key()
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"Authorization": "Bearer nope"}):
        answer = await api.client.get("/v1/admin/snapshot", headers=headers)
        assert answer.status == 401
        assert (await answer.json())["error"]["code"] == "admin_key_required"
    forged = await api.client.get(
        "/v1/admin/snapshot", headers={"Cookie": f"{COOKIE}=99999999999.deadbeef"}
    )
    assert forged.status == 401
    answer = await api.client.get("/v1/admin/snapshot", headers=ADMIN)
    assert answer.status == 200
    snap = await answer.json()
    names = sorted(p["name"] for p in snap["providers"])
    assert names == ["fal", "openai", "replicate", "wavespeed"]
    assert {"breaker", "health", "cooldown_s", "window", "series", "next_probe_in_s"} <= set(
        snap["providers"][0]
    )


async def test_session_cookie_opens_the_stream(make_api: ApiFactory, farm: Farm) -> None:
    """POST /v1/admin/session sets an HttpOnly, SameSite=Strict cookie (not the key itself)
    that lets an EventSource-style request read snapshot events."""
    api = await make_api(farm)
    token = await api.key()
    accepted = await api.submit(token, "secret-prompt-for-the-dashboard")
    await api.wait_final(token, accepted["id"])
    wrong = await api.client.post("/v1/admin/session", headers={"Authorization": "Bearer no"})
    assert wrong.status == 401
    answer = await api.client.post("/v1/admin/session", headers=ADMIN)
    assert answer.status == 200
    set_cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie
    assert ADMIN_KEY not in set_cookie
    stream = await api.client.get("/v1/admin/stream")  # the client keeps the cookie
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    events: list[dict] = []
    event = None
    while len(events) < 2:
        line = (await asyncio.wait_for(stream.content.readline(), 10)).decode().strip()
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "snapshot":
            events.append(json.loads(line.split(":", 1)[1]))
    stream.close()
    job = next(j for j in events[-1]["jobs"] if j["id"] == accepted["id"])
    assert job["status"] == "completed"
    assert job["provider"] == "fal"
    assert [a["provider"] for a in job["attempts"]] == ["fal"]
    assert "secret-prompt-for-the-dashboard" not in json.dumps(events)
    signed_out = await api.client.delete("/v1/admin/session")
    assert signed_out.status == 200
    assert (await api.client.get("/v1/admin/snapshot")).status == 401


async def test_the_session_cookie_is_secure_where_the_browser_uses_https(
    make_api: ApiFactory, farm: Farm
) -> None:
    """Over plain HTTP the cookie cannot be Secure (the browser would never send it back);
    behind an https public_url (a TLS-terminating proxy) it is, so it never rides plain HTTP."""
    plain = await make_api(farm)
    answer = await plain.client.post("/v1/admin/session", headers=ADMIN)
    assert "Secure" not in answer.headers["Set-Cookie"]
    proxied = await make_api(farm, public_url="https://images.example.com")
    answer = await proxied.client.post("/v1/admin/session", headers=ADMIN)
    assert answer.status == 200
    assert "Secure" in answer.headers["Set-Cookie"]


async def test_dashboard_page_and_assets_are_served(make_api: ApiFactory, farm: Farm) -> None:
    """/dashboard needs no key (it asks for one), forbids inline and foreign scripts, and its
    JS and CSS are served beside it."""
    api = await make_api(farm)
    page = await api.client.get("/dashboard")
    assert page.status == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert "/dashboard/static/dashboard.js" in html
    assert "http" not in html.replace("http-equiv", "")  # nothing from another origin
    for asset in ("dashboard.js", "dashboard.css"):
        answer = await api.client.get(f"/dashboard/static/{asset}")
        assert answer.status == 200, asset


async def test_farm_proxy_sets_faults_and_passes_refusals_through(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """With an in-process farm, PUT through the proxy changes the live profile; a bad profile
    gets the farm's own 422 naming the field; the proxy needs the admin key."""
    api = await make_api(farm=str(write_scenario(tmp_path / "scenario.toml")))
    path = "/v1/admin/farm/providers/fal/faults"
    assert (await api.client.put(path, json={"down": True})).status == 401
    answer = await api.client.put(path, json={"down": True}, headers=ADMIN)
    assert answer.status == 200
    assert (await answer.json())["faults"]["down"] is True
    farm_doc = await (await api.client.get("/v1/admin/farm", headers=ADMIN)).json()
    assert farm_doc["providers"]["fal"]["effective"]["down"] is True
    snap = await (await api.client.get("/v1/admin/snapshot", headers=ADMIN)).json()
    assert snap["farm"]["providers"]["fal"]["down"] is True
    bad = await api.client.put(path, json={"error_rates": {"429": 7}}, headers=ADMIN)
    assert bad.status == 422
    assert (await bad.json())["field"] == "error_rates.429"
    unknown = await api.client.put("/v1/admin/farm/providers/nobody/faults", json={}, headers=ADMIN)
    assert unknown.status == 404


async def test_farm_routes_say_when_no_farm_runs(make_api: ApiFactory, farm: Farm) -> None:
    """A server without an in-process farm answers the farm routes 404 no_farm."""
    api = await make_api(farm)
    answer = await api.client.get("/v1/admin/farm", headers=ADMIN)
    assert answer.status == 404
    assert (await answer.json())["error"]["code"] == "no_farm"
    snap = await (await api.client.get("/v1/admin/snapshot", headers=ADMIN)).json()
    assert snap["farm"] is None
