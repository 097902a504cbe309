import pytest

from primus_bridge.bench.stats import step_stats, timed_part


def test_warmup_steps_are_dropped():
    assert timed_part([9.0, 8.0, 1.0, 2.0], 2) == [1.0, 2.0]


def test_percentiles_over_timed_steps():
    stats = step_stats([100.0] + [float(i) for i in range(1, 11)], warmup_steps=1)
    assert stats.timed_steps == 10
    assert stats.mean_s == pytest.approx(5.5)
    assert stats.p50_s == pytest.approx(5.5)
    assert stats.p90_s == pytest.approx(9.1)
    assert (stats.min_s, stats.max_s) == (1.0, 10.0)


def test_no_timed_steps_is_an_error():
    with pytest.raises(ValueError, match="no timed steps"):
        step_stats([1.0, 2.0], warmup_steps=2)
