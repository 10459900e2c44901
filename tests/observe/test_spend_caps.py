"""Spend caps as the operator sees them: ``/v1/providers``, ``/metrics`` and the dashboard."""

from __future__ import annotations

from typing import Any

import pytest

from mockproviders import Farm
from tests.helpers.api import FAST_ROUTER
from tests.helpers.metrics import sample
from tests.helpers.windows import clear_of_the_hour_end
from tests.observe.conftest import ADMIN_KEY, ApiFactory
from tests.polling import eventually

#: flux-dev costs $0.025 per image on fal (catalog): the second job reaches a $0.05 cap.
CAPPED = {**FAST_ROUTER, "providers": {"fal": {"max_usd_per_hour": 0.05, "max_usd_per_day": 1}}}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(autouse=True)
async def _clear_of_the_hour_end() -> None:
    """Spend windows are UTC hours: no scenario here straddles the end of one."""
    await clear_of_the_hour_end()


async def test_spend_and_caps_show_on_providers_metrics_and_the_dashboard(
    make_api: ApiFactory, farm: Farm
) -> None:
    """Two flux-dev jobs reach fal's hourly cap; the third goes to WaveSpeed with a spend_cap
    skip; every view shows what was spent against which cap, and that fal is capped."""
    api = await make_api(farm, CAPPED)
    token = await api.key()
    finals = []
    for number in range(3):
        accepted = await api.submit(token, f"a lighthouse {number}")
        finals.append(await api.wait_final(token, accepted["id"]))
    assert [body["status"] for body in finals] == ["completed"] * 3
    last = await (
        await api.client.get(f"/v1/jobs/{finals[2]['id']}", headers=api.auth(token))
    ).json()
    skips = [a for a in last["attempts"] or [] if a["outcome"] == "skipped"]
    assert [(a["provider"], a["reason"].split(":")[0]) for a in skips] == [("fal", "spend_cap")]
    assert last["attempts"][-1]["provider"] == "wavespeed"

    answer = await api.client.get("/v1/providers", headers=api.auth(token))
    assert answer.status == 200
    providers = {entry["name"]: entry for entry in (await answer.json())["data"]}
    hour = providers["fal"]["spend"]["hour"]
    assert hour["cap_usd"] == 0.05
    assert hour["spent_usd"] == pytest.approx(0.05)
    assert hour["capped"] is True
    assert 0 < hour["resets_in_s"] <= 3600
    assert providers["fal"]["spend"]["day"]["capped"] is False
    assert providers["wavespeed"]["spend"] is None

    values = await api.metrics()
    spend = "imagerouter_provider_spend_usd"
    assert sample(values, spend, provider="fal", window="hour") == pytest.approx(0.05)
    assert sample(values, spend, provider="fal", window="day") == pytest.approx(0.05)
    assert sample(values, "imagerouter_provider_spend_cap_usd", provider="fal", window="day") == 1
    assert sample(values, "imagerouter_provider_spend_capped", provider="fal", window="hour") == 1
    assert sample(values, "imagerouter_provider_spend_capped", provider="fal", window="day") == 0
    skipped = sample(values, "imagerouter_provider_skips_total", provider="fal", reason="spend_cap")
    assert skipped == 1
    assert not any(
        name == spend and dict(labels).get("provider") == "wavespeed" for name, labels in values
    )

    async def dashboard_fal() -> dict[str, Any] | None:
        answer = await api.client.get("/v1/admin/snapshot", headers=ADMIN)
        snap = await answer.json()
        fal = next(p for p in snap["providers"] if p["name"] == "fal")
        return fal if fal["spend"] and fal["spend"]["hour"]["capped"] else None

    fal = await eventually(dashboard_fal, what="the dashboard shows fal capped")
    assert fal["spend"]["hour"]["spent_usd"] == pytest.approx(0.05)
