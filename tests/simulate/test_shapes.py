"""Traffic shapes: scaled rates, the launch-week curve, and what Locust needs from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.shapes import (
    LaunchWeek,
    Spike,
    Steady,
    expected_jobs,
    locust_tick,
    make_shape,
    shape_names,
    users_at,
)


def test_steady_is_the_peak_inside_the_run_and_zero_outside() -> None:
    """A steady shape asks for its peak rate during the run and nothing before or after."""
    shape = Steady(peak_per_s=10.0, duration_s=60.0)
    assert shape.rate(0.0) == shape.rate(59.9) == 10.0
    assert shape.rate(-1.0) == shape.rate(60.0) == 0.0
    assert expected_jobs(shape) == pytest.approx(600.0)


def test_launch_week_ramps_plateaus_spikes_to_the_peak_and_decays() -> None:
    """The launch-week curve starts low, plateaus, touches the peak in its spikes, then decays."""
    shape = make_shape("launch-week", peak_per_s=100.0, duration_s=1000.0)
    assert isinstance(shape, LaunchWeek)
    assert shape.rate(0.0) == pytest.approx(5.0)
    assert shape.rate(150.0) == pytest.approx(60.0)  # the plateau, between spikes
    samples = [shape.rate(t / 10) for t in range(10_000)]
    assert max(samples) == pytest.approx(100.0, rel=0.01)
    assert shape.rate(999.0) < shape.rate(710.0) < 60.0
    assert 0.3 * 100_000 < expected_jobs(shape) < 0.7 * 100_000


def test_shapes_scale_linearly_with_their_peak() -> None:
    """Doubling the peak doubles the rate at every moment (the same curve at any scale)."""
    small = make_shape("spike", peak_per_s=1.0, duration_s=100.0)
    large = make_shape("spike", peak_per_s=2.0, duration_s=100.0)
    assert all(large.rate(t) == pytest.approx(2 * small.rate(t)) for t in range(100))
    assert isinstance(small, Spike)
    assert small.rate(50.0) == pytest.approx(1.0)


def test_unknown_shape_or_parameter_is_a_clear_error() -> None:
    """A misspelt shape or parameter names the problem and lists the known shapes."""
    with pytest.raises(ValueError, match="known: launch_week, ramp, spike, steady"):
        make_shape("tsunami", 1.0, 1.0)
    with pytest.raises(ValueError, match="spikes_per_hour"):
        make_shape("launch_week", 1.0, 1.0, spikes_per_hour=3)
    assert shape_names() == ["launch_week", "ramp", "spike", "steady"]


def test_locust_tick_gives_users_for_the_rate_and_stops_at_the_end() -> None:
    """Locust users follow the rate (users = rate / jobs per user), and the run ends on time."""
    shape = make_shape("ramp", peak_per_s=50.0, duration_s=100.0)
    assert users_at(shape, 50.0, jobs_per_user_s=0.5) == 50
    tick = locust_tick(shape, 99.0, jobs_per_user_s=0.5)
    assert tick is not None
    assert tick[0] == 99
    assert tick[1] >= 1.0
    assert locust_tick(shape, 100.0, jobs_per_user_s=0.5) is None


def test_shapes_module_does_not_import_locust() -> None:
    """The shapes are shared with pytest and the simulator, so they must not pull in Locust."""
    import imagerouter.shapes as shapes

    source = Path(shapes.__file__).read_text(encoding="utf-8")
    assert "import locust" not in source
    assert "from locust" not in source
