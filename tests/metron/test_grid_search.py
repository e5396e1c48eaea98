"""metron.grid_search against a scripted capacity: every verdict is `qps <= capacity`, so the
rates probed, the bracket and the probe count follow by hand from the grid 2 ** (k / 4)."""

import pytest

from metron.grid_search import GridSearch, GridSearchConfig


def run(search: GridSearch, capacity: float) -> list[float]:
    probed = []
    while (qps := search.next_qps()) is not None:
        probed.append(qps)
        search.record(qps, qps <= capacity)
    return probed


def test_it_doubles_until_a_failure_then_bisects_to_one_grid_step() -> None:
    search = GridSearch(GridSearchConfig(initial_qps=1.0, min_qps=0.125))
    assert run(search, capacity=1.5) == [1.0, 2.0, 1.41421, 1.68179]
    assert (search.capacity_qps, search.failed_qps, search.converged, search.num_probes) == (1.41421, 1.68179, True, 4)


def test_it_halves_until_a_pass_then_bisects() -> None:
    search = GridSearch(GridSearchConfig(initial_qps=1.0, min_qps=0.125))
    assert run(search, capacity=0.3) == [1.0, 0.5, 0.25, 0.353553, 0.297302]
    assert (search.capacity_qps, search.failed_qps, search.converged) == (0.297302, 0.353553, True)


def test_a_failure_at_the_lowest_rate_is_capacity_zero() -> None:
    search = GridSearch(GridSearchConfig(initial_qps=1.0, min_qps=0.2))  # lowest k = floor(4 log2 0.2) = -10
    assert run(search, capacity=0.01) == [1.0, 0.5, 0.25, 0.176777]
    assert (search.capacity_qps, search.failed_qps, search.converged) == (0.0, 0.176777, True)


def test_the_probe_limit_stops_it_with_the_bracket_so_far_not_converged() -> None:
    search = GridSearch(GridSearchConfig(initial_qps=1.0, min_qps=0.5, max_probes=2))
    assert run(search, capacity=5.0) == [1.0, 2.0]
    assert (search.capacity_qps, search.failed_qps, search.converged) == (2.0, None, False)


def test_a_verdict_for_another_rate_and_bad_settings_are_refused() -> None:
    search = GridSearch(GridSearchConfig(initial_qps=1.0, min_qps=0.5))
    with pytest.raises(ValueError, match="asked for 1.0 QPS, not 2.0"):
        search.record(2.0, True)
    for bad, message in (
        ({"initial_qps": 0.0, "min_qps": 0.1}, "initial_qps"),
        ({"initial_qps": 1.0, "min_qps": 2.0}, "min_qps"),
        ({"initial_qps": 1.0, "min_qps": 0.5, "steps_per_doubling": 0}, "steps_per_doubling"),
        ({"initial_qps": 1.0, "min_qps": 0.5, "max_probes": 0}, "max_probes"),
    ):
        with pytest.raises(ValueError, match=message):
            GridSearchConfig(**bad)  # type: ignore[arg-type]
