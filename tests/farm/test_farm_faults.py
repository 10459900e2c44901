"""The shared fault engine, seen over HTTP: token buckets, Retry-After windows, phases,
live profile changes and determinism."""

from __future__ import annotations

import asyncio
import email.utils

import aiohttp

from imagerouter.clock import FakeClock
from mockproviders import Farm, FaultProfile, Phase, Scenario

from .wire import Wire


async def test_token_bucket_limits_one_key_not_another(
    fake_farm: Farm, fake_wire: Wire, clock: FakeClock
) -> None:
    """An empty bucket answers 429 to its key only, with the time until the next token."""
    fake_farm.set_faults("openai", {"rate_limit": {"rpm": 60, "burst": 2}})
    first = await fake_wire.openai(key="sk-a")
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "1s"
    statuses = [first.status] + [(await fake_wire.openai(key="sk-a")).status for _ in range(2)]
    assert statuses == [200, 200, 429]

    clock.advance(0.25)
    limited = await fake_wire.openai(key="sk-a")
    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["retry-after-ms"] == "750"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"] == "1.75s"
    assert (await limited.json())["error"]["code"] == "rate_limit_exceeded"

    other = await fake_wire.openai(key="sk-b")
    assert other.status == 200

    clock.advance(0.75)
    assert (await fake_wire.openai(key="sk-a")).status == 200
    keys = fake_farm.stats()["providers"]["openai"]["keys"]
    assert keys["sk-a"]["by_status"] == {"200": 3, "429": 2}
    assert keys["sk-b"]["by_status"] == {"200": 1}


async def test_bucket_retry_after_rounds_up_to_whole_seconds(
    fake_farm: Farm, fake_wire: Wire
) -> None:
    """At 6.5 rpm the next token is 9.2 s away: retry-after 10 (rounded up), and no -ms on fal."""
    fake_farm.set_faults("fal", {"rate_limit": {"rpm": 6.5, "burst": 1}})
    assert (await fake_wire.fal_submit()).status == 200
    limited = await fake_wire.fal_submit()
    assert limited.status == 429
    assert limited.headers["retry-after"] == "10"
    assert "retry-after-ms" not in limited.headers


async def test_retry_after_formats(fake_farm: Farm, fake_wire: Wire, clock: FakeClock) -> None:
    """A 429 can say HTTP-date, milliseconds only, or nothing at all."""
    fake_farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": "http-date"})
    dated = await fake_wire.wavespeed_submit()
    when = email.utils.parsedate_to_datetime(dated.headers["retry-after"]).timestamp()
    assert 1.0 <= when - clock.wall() < 2.0

    fake_farm.set_faults(
        "wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 0.3, "retry_after_format": "ms"}
    )
    millis = await fake_wire.wavespeed_submit()
    assert millis.headers["retry-after-ms"] == "300"
    assert "retry-after" not in millis.headers

    # HTTP's delay-seconds is whole seconds: a configured 0.3 is sent rounded up, the exact
    # wait only in retry-after-ms where the provider sends that header (OpenAI)
    fake_farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 0.3})
    whole = await fake_wire.wavespeed_submit()
    assert whole.headers["retry-after"] == "1"
    assert "retry-after-ms" not in whole.headers
    fake_farm.set_faults("openai", {"error_rates": {"429": 1.0}, "retry_after_s": 0.3})
    exact = await fake_wire.openai()
    assert (exact.headers["retry-after"], exact.headers["retry-after-ms"]) == ("1", "300")

    fake_farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_format": "none"})
    bare = await fake_wire.wavespeed_submit()
    assert bare.status == 429
    assert "retry-after" not in bare.headers
    stats = fake_farm.stats()["providers"]["wavespeed"]
    assert stats["retry_after_issued"] == 3


async def test_inside_retry_after_counts_with_and_without_grace(farm: Farm, wire: Wire) -> None:
    """A request inside a 1 s Retry-After counts (graced only after grace_ms); after, none."""
    farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 1, "grace_ms": 1})
    assert (await wire.fal_submit(key="eager")).status == 429
    farm.set_faults("fal", {"grace_ms": 1})
    await asyncio.sleep(0.05)
    assert (await wire.fal_submit(key="eager")).status == 200
    assert (await wire.fal_submit(key="patient")).status == 200
    await asyncio.sleep(1.05)
    assert (await wire.fal_submit(key="eager")).status == 200

    fal = farm.stats()["providers"]["fal"]
    assert (fal["inside_retry_after"], fal["inside_retry_after_raw"]) == (1, 1)
    assert fal["retry_after_issued"] == 1
    assert fal["keys"]["eager"]["inside_retry_after"] == 1
    assert fal["keys"]["patient"]["inside_retry_after_raw"] == 0


async def test_grace_forgives_requests_already_in_flight(
    fake_farm: Farm, fake_wire: Wire, clock: FakeClock
) -> None:
    """Within grace_ms of the 429 only the raw counter moves; polls never count."""
    fake_farm.set_faults("fal", {"generation_ms": 5000})
    handle = await (await fake_wire.fal_submit()).json()
    fake_farm.set_faults("fal", {"error_rates": {"429": 1.0}, "grace_ms": 100})
    assert (await fake_wire.fal_submit()).status == 429
    fake_farm.set_faults("fal", {})
    clock.advance(0.05)
    assert (await fake_wire.fal_submit()).status == 200
    assert (await fake_wire.fal_get(handle["status_url"])).status == 202
    clock.advance(0.1)
    assert (await fake_wire.fal_submit()).status == 200
    fal = fake_farm.stats()["providers"]["fal"]
    assert (fal["inside_retry_after"], fal["inside_retry_after_raw"]) == (1, 2)


async def test_phases_follow_the_scenario_clock_and_reset_restarts_it(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    """A phase applies between at_s and until_s on the scenario clock; reset starts it over."""
    down = Phase(at_s=5, until_s=10, faults=FaultProfile(down=True))
    scenario = Scenario(providers={"fal": FaultProfile(phases=[down])})
    async with Farm(scenario, clock=clock) as farm:
        wire = Wire(session, farm)
        seen = [(await wire.fal_submit()).status]
        clock.advance(6)
        seen.append((await wire.fal_submit()).status)
        assert farm.providers()["providers"]["fal"]["effective"]["down"] is True
        farm.reset()
        seen.append((await wire.fal_submit()).status)
        clock.advance(6)
        seen.append((await wire.fal_submit()).status)
        clock.advance(5)
        seen.append((await wire.fal_submit()).status)
        assert seen == [200, 503, 200, 503, 200]
        assert farm.stats()["providers"]["fal"]["by_status"] == {"200": 2, "503": 1}


async def test_control_api_put_get_and_reset(farm: Farm, session: aiohttp.ClientSession) -> None:
    """PUT replaces the live profile (GET shows it); reset zeroes the counters."""
    wire = Wire(session, farm)
    providers = await (await session.get(f"{farm.url}/_farm/providers")).json()
    fal = providers["providers"]["fal"]
    assert fal["base_url"] == f"{farm.url}/fal/queue"
    assert fal["queue_host"] == farm.url.removeprefix("http://") + "/fal/queue"
    assert fal["run_host"] == farm.url.removeprefix("http://") + "/fal/run"
    assert providers["providers"]["openai"]["base_url"] == f"{farm.url}/openai/v1"
    assert providers["providers"]["wavespeed"]["base_url"] == f"{farm.url}/wavespeed"
    assert providers["ca_bundle"] is None

    put = await session.put(f"{farm.url}/_farm/providers/fal/faults", json={"down": True})
    assert put.status == 200
    assert (await put.json())["faults"] == {"down": True}
    assert (await wire.fal_submit()).status == 503
    shown = await (await session.get(f"{farm.url}/_farm/providers")).json()
    assert shown["providers"]["fal"]["effective"]["down"] is True

    stats = await (await session.get(f"{farm.url}/_farm/stats")).json()
    assert stats["providers"]["fal"]["by_status"] == {"503": 1}
    assert (await session.post(f"{farm.url}/_farm/reset")).status == 200
    stats = await (await session.get(f"{farm.url}/_farm/stats")).json()
    assert stats["providers"]["fal"]["requests"] == 0
    assert stats["providers"]["fal"]["keys"] == {}


async def test_put_rejects_bad_profiles_and_unknown_providers(
    farm: Farm, session: aiohttp.ClientSession
) -> None:
    """A bad body is 422 naming the field; an unknown provider is 404; nothing changes."""
    url = f"{farm.url}/_farm/providers/fal/faults"
    bad_rate = await session.put(url, json={"error_rates": {"429": 2}})
    body = await bad_rate.json()
    assert bad_rate.status == 422
    assert body["field"] == "error_rates.429"
    assert "1" in body["reason"]
    unknown_field = await (await session.put(url, json={"dwon": True})).json()
    assert unknown_field["field"] == "dwon"
    for loose in ("yes", 1):  # a boolean is true or false, not a word or a number
        not_a_bool = await session.put(url, json={"down": loose})
        assert not_a_bool.status == 422
        assert (await not_a_bool.json())["field"] == "down"
    not_json = await session.put(url, data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status == 422
    missing = await session.put(f"{farm.url}/_farm/providers/acme/faults", json={})
    assert missing.status == 404
    assert farm.providers()["providers"]["fal"]["faults"] == {}


async def _statuses(seed: int, session: aiohttp.ClientSession) -> list[int]:
    rates = {"429": 0.2, "500": 0.1, "503": 0.1, "401": 0.1, "content_policy": 0.1}
    scenario = Scenario(seed=seed, providers={"openai": FaultProfile(error_rates=rates)})
    async with Farm(scenario) as farm:
        wire = Wire(session, farm)
        return [(await wire.openai()).status for _ in range(40)]


async def test_same_seed_same_outcomes(session: aiohttp.ClientSession) -> None:
    """Two farms with the same seed answer the same request sequence identically."""
    first = await _statuses(11, session)
    assert first == await _statuses(11, session)
    assert first != await _statuses(12, session)
    assert {200, 429, 500} <= set(first)


async def test_reset_replays_the_same_outcomes(farm: Farm, wire: Wire) -> None:
    """After a reset the seeded RNG starts over, so the same sequence answers the same."""
    farm.set_faults("openai", {"error_rates": {"500": 0.5}, "seed": 3})
    before = [(await wire.openai()).status for _ in range(20)]
    farm.reset()
    after = [(await wire.openai()).status for _ in range(20)]
    assert before == after
    assert set(before) == {200, 500}
