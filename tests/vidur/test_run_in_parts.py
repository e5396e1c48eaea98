"""A run written a part of its requests at a time (`vidur.run_in_parts`: what a long run takes)
gives the files and summary of the same run written whole, byte for byte: every workload shape
(warm-up, sessions, shared prefixes, clipped trace lengths, a cut run), every SLO kind, parts
of one request and of many, token times held or streamed to disk. The miss-rate curve's P99s
come from each deadline's largest miss rates alone: numpy's percentile of all of them."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.sessions import SessionConfig
from metron.slo import SloConfig
from metron.workload import WorkloadConfig

from vidur import ClusterConfig, DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment
from vidur.output import write_simulated_run
from vidur.largest_values import LargestValues, values_to_keep
from vidur.run_in_parts import num_token_slots, part_bounds

TRACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces" / "splitwise_code.csv"
WORKLOADS = {
    "warmup": WorkloadConfig(num_requests=300, num_warmup_requests=20, seed=4, lengths=LengthConfig(kind="uniform")),
    "trace-clipped": WorkloadConfig(
        num_requests=400,
        arrivals=ArrivalConfig(kind="trace", trace_path=str(TRACE), rate_scale=6.0),
        lengths=LengthConfig(kind="trace", trace_path=str(TRACE), shuffle=True, max_total_tokens=2048),
    ),
    "sessions": WorkloadConfig(num_requests=60, sessions=SessionConfig(num_turns=3, think_time_s=2.0)),
    "shared-prefix": WorkloadConfig(num_requests=40, shared_prefix_tokens=64),
}
SLOS = {
    "deadline": SloConfig(kind="deadline", max_miss_rate=0.05),
    "tbt_ttft": SloConfig(kind="tbt_ttft", p90_ttft_s=2.0, p99_tbt_s=0.05, tbt_percentile=95.0),
    "tpot": SloConfig(kind="ttft_tpot", p90_ttft_s=2.0, p90_tpot_s=0.04),
}
WALL_CLOCK_KEYS = ("wall_s", "iterations_per_wall_s")


def _files(directory: Path) -> dict[str, bytes]:
    files = {path.name: path.read_bytes() for path in sorted(directory.iterdir())}
    simulation = json.loads(files.pop("simulation.json"))
    for key in WALL_CLOCK_KEYS:
        simulation.pop(key)
    files["simulation.json"] = json.dumps(simulation).encode()
    return files


@pytest.fixture(scope="module")
def simulator(predictor: OperatorPredictor) -> Simulator:
    base = DeploymentConfig(cluster=ClusterConfig(num_replicas=2, router="least_outstanding"))
    # Prompts longer than 1,024 tokens are refused: the runs have errors too.
    scheduler = dataclasses.replace(base.scheduler, max_model_len=1024, enable_prefix_caching=True)
    return Simulator(plan_deployment(dataclasses.replace(base, scheduler=scheduler), predictor))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_a_run_written_in_parts_is_the_run_written_whole(simulator: Simulator, name: str, tmp_path: Path) -> None:
    workload = Workload.generated(WORKLOADS[name])
    held = simulator.run(workload)
    spilled = simulator.run(workload, spill_directory=tmp_path / "spill", spill_block_rows=50)
    deadlines = DeadlineConfig(tbt_s=0.05, ttft_s=1.0)
    for kind, slo in SLOS.items():
        write_simulated_run(held, tmp_path / f"whole-{kind}", deadlines=deadlines, slo=slo, plots=False)
        expected = _files(tmp_path / f"whole-{kind}")
        for part_token_slots in (1, 997):
            result = spilled if part_token_slots == 1 else held
            assert len(part_bounds(result, part_token_slots)) > 1
            out = tmp_path / f"parts-{kind}-{part_token_slots}"
            scored = write_simulated_run(
                result, out, deadlines=deadlines, slo=slo, plots=False, part_token_slots=part_token_slots
            )
            assert _files(out) == expected, (kind, part_token_slots)
            assert name != "trace-clipped" or b"error" in expected["requests.csv"]
            assert scored.columns.token_times_s is None


def test_a_cut_run_in_parts_is_the_cut_run_whole(simulator: Simulator, tmp_path: Path) -> None:
    lengths = LengthConfig(kind="uniform", prompt_tokens=600, output_tokens=200)
    workload = Workload.generated(WorkloadConfig(num_requests=200, arrivals=ArrivalConfig(rate=40.0), lengths=lengths))
    limit_s = simulator.run(workload).end_s / 2
    result = simulator.run(workload, max_simulated_s=limit_s, spill_directory=tmp_path / "spill")
    assert result.is_cut and result.num_unfinished > 0
    deadlines, slo = DeadlineConfig(tbt_s=0.05), SLOS["deadline"]
    write_simulated_run(result, tmp_path / "whole", deadlines=deadlines, slo=slo)
    scored = write_simulated_run(result, tmp_path / "parts", deadlines=deadlines, slo=slo, part_token_slots=500)
    assert _files(tmp_path / "parts") == _files(tmp_path / "whole")  # the plots too
    with pytest.raises(ValueError, match="hold no token times"):
        scored.records


def test_parts_cover_the_requests_in_order(simulator: Simulator) -> None:
    result = simulator.run(Workload.generated(WORKLOADS["warmup"]))
    offsets = result.requests["token_offsets"]
    for part_token_slots in (1, 100, 5000, num_token_slots(result)):
        bounds = part_bounds(result, part_token_slots)
        assert [start for start, _ in bounds] == [0] + [stop for _, stop in bounds[:-1]]
        assert bounds[-1][1] == result.num_arrived
        for start, stop in bounds:
            assert stop - start == 1 or offsets[stop] - offsets[start] <= part_token_slots
    assert part_bounds(result, num_token_slots(result)) == [(0, result.num_arrived)]
    with pytest.raises(ValueError, match="at least one token slot"):
        part_bounds(result, 0)


@pytest.mark.parametrize("num_values", [1, 2, 3, 99, 100, 101, 102, 199, 201, 1000, 4321])
def test_the_largest_values_give_numpys_percentile(num_values: int) -> None:
    rng = np.random.default_rng(num_values)
    # Miss rates: fractions of small counts, so many ties; one column constant.
    totals = rng.integers(1, 40, size=(num_values, 3))
    table = rng.integers(0, totals + 1) / totals
    table[:, 2] = 0.25
    for q in (99.0, 50.0, 90.0, 100.0):
        largest = LargestValues(values_to_keep(num_values, q), prune_above=0)  # pruned at every block
        for block in np.array_split(table, min(num_values, 7)):
            largest.add(block)
        assert largest.num_rows == values_to_keep(num_values, q) <= num_values
        expected = [float(np.percentile(table[:, j], q)) for j in range(3)]
        assert largest.percentile(num_values, q) == expected, q
