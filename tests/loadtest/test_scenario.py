"""Load-test scenario files: the bundled ones load, times scale, mistakes name their field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from imagerouter.shapes import expected_jobs
from loadtests.scenario import bundled_scenarios, load_load_scenario

BUNDLED = ("launch-week", "retry-after-compliance", "steady", "total-outage")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_bundled_scenarios_load() -> None:
    """Every scenario of the issue ships, loads by name and has a description."""
    assert set(BUNDLED) <= set(bundled_scenarios())
    for name in BUNDLED:
        scenario = load_load_scenario(name)
        assert scenario.name == name
        assert scenario.description
        midway = scenario.duration_s / 2
        assert scenario.shape().rate(midway) > 0


def test_scaling_moves_every_phase_with_the_duration() -> None:
    """launch-week on 120 s instead of 300 s: every phase time is multiplied by 0.4."""
    nominal = load_load_scenario("launch-week")
    scaled = nominal.scaled(120)
    assert scaled.duration_s == 120
    for before, after in zip(nominal.phases, scaled.phases, strict=True):
        assert after.at_s == pytest.approx(before.at_s * 0.4)
        assert after.until_s == pytest.approx(before.until_s * 0.4)
    assert [name for name, *_ in scaled.phase_spans()] == [p.name for p in nominal.phases]


def test_shape_peaks_at_the_users() -> None:
    """The arrival shape peaks at users × jobs_per_user_s and asks for a finite number of jobs."""
    scenario = load_load_scenario("launch-week").scaled(120)
    shape = scenario.shape(200)
    peak = max(shape.rate(t / 10) for t in range(1200))
    assert peak == pytest.approx(200 * scenario.traffic.jobs_per_user_s, rel=0.02)
    assert 0 < expected_jobs(shape) < 200 * 0.2 * 120


def test_the_farm_scenarios_own_phases_are_reported_on_its_clock(tmp_path: Path) -> None:
    """A farm scenario with a phase of its own (openai down from 5 to 15 s): the report's
    phases show it beside the scenario's, unscaled (the farm runs it on its own clock) and
    only when it starts within the run; the run's timeline does not apply it again."""
    (tmp_path / "farm.toml").write_text(
        'description = "x"\n[providers.openai]\nlatency_ms = 1\n'
        "[[providers.openai.phases]]\nat_s = 5\nuntil_s = 15\nfaults = { down = true }\n"
        "[[providers.openai.phases]]\nat_s = 500\nfaults = { latency_ms = 9 }\n"
    )
    path = _write(
        tmp_path,
        'farm_scenario = "farm.toml"\nduration_s = 60\n[[phases]]\nname = "fal slow"\n'
        'providers = ["fal"]\nat_s = 20\nuntil_s = 30\nfaults = { latency_ms = 500 }\n',
    )
    scenario = load_load_scenario(path)
    assert [p.name for p in scenario.phases] == ["fal slow"]
    assert scenario.phase_spans() == [
        ("fal slow", 20.0, 30.0),
        ("openai: down (farm scenario)", 5.0, 15.0),
    ]
    assert scenario.scaled(120).phase_spans()[1] == ("openai: down (farm scenario)", 5.0, 15.0)
    with pytest.raises(ConfigError, match="farm_phases"):
        load_load_scenario(_write(tmp_path, "farm_phases = []"))


def test_open_phase_spans_to_the_end() -> None:
    """A phase without until_s spans to the end of the run (and holds through the drain)."""
    scenario = load_load_scenario("total-outage").scaled(30)
    assert scenario.phase_spans() == [("everyone down", 5.0, 30.0)]


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('[traffic]\nshape = "sawtooth"', "traffic.shape", "unknown traffic shape"),
        ("[traffic]\njobs_per_user_s = 0", "traffic.jobs_per_user_s", "greater than 0"),
        ('[traffic]\nmodels = { "gpt-image-2" = -1 }', "traffic.models", "weights"),
        ("[traffic]\nfollow = { carrier_pigeon = 1 }", "traffic.follow", ""),
        (
            '[[phases]]\nname = "x"\nproviders = ["fal"]\nfaults = { error_rates = { "429" = 2 } }',
            "phases[0]",
            "faults.error_rates.429",
        ),
        (
            '[[phases]]\nname = "x"\nproviders = ["fal"]\nat_s = 10\nuntil_s = 5\nfaults = {}',
            "phases[0]",
            "until_s must be greater than at_s",
        ),
        (
            'duration_s = 60\n[[phases]]\nname = "late"\nproviders = ["fal"]\nat_s = 90\n'
            "faults = { down = true }",
            None,
            "starts at 90 s",
        ),
        ("userz = 3", "userz", "unknown field"),
        # names only the rest of the system knows: checked as the file is read, not after the
        # server has started (where the error named the run's generated config)
        ("[router]\ndeadlin_s = 5", "router.deadlin_s", "unknown field"),
        ("[server]\nworkrs = 5", "server.workrs", "unknown field"),
        ('farm_scenario = "loadtst"', "farm_scenario", "no bundled scenario of that name"),
        (
            '[[phases]]\nname = "x"\nproviders = ["wavespped"]\nfaults = { down = true }',
            "phases[0].providers",
            "the farm serves no provider 'wavespped'",
        ),
        # every submit the mix can send is one the server takes (else the run measures nothing)
        (
            '[traffic]\nmodels = { "gpt-image-9" = 1 }',
            "traffic.models.gpt-image-9",
            "unknown model 'gpt-image-9'",
        ),
        ('[traffic]\nmodels = { "veo3-fast" = 1 }', "traffic.models.veo3-fast", "makes videos"),
        ('[traffic]\nsizes = { "big" = 1 }', "traffic.sizes.big", "WIDTHxHEIGHT"),
        ('[traffic]\nsizes = { "8000x8000" = 1 }', "traffic.sizes.8000x8000", "maximum 3840"),
        ('[traffic]\nqualities = { "ultra" = 1 }', "traffic.qualities.ultra", "'hd'"),
        (
            '[traffic]\nvideo_fraction = 0.5\nvideo_models = { "flux-dev" = 1 }',
            "traffic.video_models.flux-dev",
            "makes images",
        ),
        (
            '[[traffic.routing]]\nshare = 0.5\npreferences = { sort = "fastest" }',
            "traffic.routing[0].preferences.sort",
            "",
        ),
        (
            "[[traffic.routing]]\nshare = 0.7\npreferences = {}\n"
            "[[traffic.routing]]\nshare = 0.7\npreferences = {}",
            "traffic.routing",
            "add up to more than 1",
        ),
    ],
)
def test_mistakes_name_the_file_field_and_reason(
    tmp_path: Path, text: str, field: str | None, reason: str
) -> None:
    """A bad scenario is a ConfigError naming the file, the field and why."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_load_scenario(path)
    message = str(caught.value)
    assert str(path) in message
    if field:
        assert field in message
    assert reason in message
    assert "Value error" not in message  # the validator's own words, as README writes them


def test_unknown_name_lists_the_bundled_ones() -> None:
    """An unknown scenario name says so and lists what ships."""
    with pytest.raises(ConfigError, match="launch-week"):
        load_load_scenario("no-such-scenario")


def test_launch_week_sends_a_share_of_routing_preferences() -> None:
    """launch-week's clients send ``routing`` on about a tenth of their submits: the draw
    maps to each share's preferences, as set in the file, and the rest carry none."""
    traffic = load_load_scenario("launch-week").traffic
    assert sum(share.share for share in traffic.routing) == pytest.approx(0.1)
    assert traffic.routing_of(0.01) == {"ignore": ["openai"]}
    assert traffic.routing_of(0.07) == {"sort": "price"}
    assert traffic.routing_of(0.5) is None


def test_video_mix_sends_catalog_video_models_beside_images() -> None:
    """video-mix: a fifth of the jobs are videos, of models the shipped catalog makes video
    with; the image models stay image models."""
    from imagerouter.catalog import load_catalog

    scenario = load_load_scenario("video-mix")
    traffic = scenario.traffic
    assert traffic.video_fraction == 0.2
    catalog = load_catalog()
    assert {catalog.resolve(name).kind for name in traffic.video_models} == {"video"}
    assert {catalog.resolve(name).kind for name in traffic.models} == {"image"}


def test_the_plan_holding_the_runs_api_key_is_its_owners_alone(tmp_path: Path) -> None:
    """plan.json holds the run's API key, valid on the run's database beside it: written
    0600 (it was 0644), also over an existing file."""
    from loadtests.plan import LocustPlan

    plan = LocustPlan(
        scenario="steady",
        host="http://127.0.0.1:1",
        api_key="ir_secret",
        users=1,
        duration_s=1,
        traffic=load_load_scenario("steady").traffic,
        follow={"poll": 1.0},
        follow_timeout_s=5,
        records_dir=str(tmp_path),
        receiver_url="http://127.0.0.1:2",
    )
    path = tmp_path / "plan.json"
    path.write_text("{}")
    path.chmod(0o644)
    plan.dump(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "ir_secret" in path.read_text()
