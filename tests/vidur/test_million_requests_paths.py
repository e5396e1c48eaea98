"""What a million-request run goes through, checked on small runs against the per-request paths:
the workload drawn straight into columns is metron's `generate_workload`, a `requests.jsonl`
formatted and written part by part (so its text is never held whole) is metron's writer's, byte
for byte, and `vidur simulate` never takes a per-request path."""

from pathlib import Path

import metron.workload
import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.run_format import write_run
from metron.sessions import SessionConfig
from metron.summary import summarize
from metron.workload import WorkloadConfig, generate_workload

import vidur.run_columns
import vidur.simulation
from vidur import ClusterConfig, DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment
from vidur.cli import main
from vidur.output import write_simulated_run

TRACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces" / "splitwise_code.csv"
WORKLOADS = {
    "poisson-uniform-warmup": WorkloadConfig(
        num_requests=500, num_warmup_requests=20, seed=4, lengths=LengthConfig(kind="uniform")
    ),
    "gamma-zipf": WorkloadConfig(
        num_requests=300,
        seed=9,
        arrivals=ArrivalConfig(kind="gamma", rate=3.0, cv=2.5),
        lengths=LengthConfig(kind="zipf"),
    ),
    "trace-clipped": WorkloadConfig(
        num_requests=2000,
        arrivals=ArrivalConfig(kind="trace", trace_path=str(TRACE), rate_scale=3.0),
        lengths=LengthConfig(kind="trace", trace_path=str(TRACE), shuffle=True, max_total_tokens=2048),
    ),
    "static": WorkloadConfig(num_requests=50, arrivals=ArrivalConfig(kind="static")),
    "sessions": WorkloadConfig(num_requests=60, sessions=SessionConfig(num_turns=3, think_time_s=2.0)),
    "shared-prefix": WorkloadConfig(num_requests=40, shared_prefix_tokens=64),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_the_columns_workload_is_metrons(name: str) -> None:
    config = WORKLOADS[name]
    columns, expected = Workload.generated(config), Workload.from_requests(generate_workload(config))
    for field in ("ids", "arrival_s", "prompt_tokens", "output_tokens", "warmup"):
        got, want = getattr(columns, field), getattr(expected, field)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), field


def test_a_jsonl_written_in_parts_is_metrons_byte_for_byte(predictor: OperatorPredictor, tmp_path: Path) -> None:
    # 6,000 requests of up to 300 tokens: about 900,000 token times, more than one part's worth.
    lengths = LengthConfig(kind="uniform", prompt_tokens=800, output_tokens=300)
    config = WorkloadConfig(num_requests=6000, seed=2, arrivals=ArrivalConfig(rate=60.0), lengths=lengths)
    simulator = Simulator(plan_deployment(DeploymentConfig(cluster=ClusterConfig(num_replicas=4)), predictor))
    result = simulator.run(Workload.generated(config), record_iterations=False)
    assert int(result.requests["num_tokens"].sum()) > 2**19
    deadlines = DeadlineConfig(tbt_s=0.03, ttft_s=0.5)
    write_simulated_run(result, tmp_path / "columns", deadlines=deadlines, plots=False)
    records = result.records(deadlines)
    write_run(tmp_path / "records", records, summarize(records), {})
    for name in ("requests.jsonl", "requests.csv"):
        assert (tmp_path / "columns" / name).read_bytes() == (tmp_path / "records" / name).read_bytes(), name
    assert np.array_equal(result.requests["num_tokens"], result.workload.output_tokens)


def test_vidur_simulate_builds_no_object_per_request(
    data_dir: Path, predictor: OperatorPredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a per-request path was taken")

    monkeypatch.setattr(metron.workload, "generate_workload", refuse)  # a RequestSpec per request
    monkeypatch.setattr(vidur.simulation, "generate_workload", refuse)
    monkeypatch.setattr(vidur.simulation.SimulationResult, "measured", refuse)  # RequestTimes per request
    monkeypatch.setattr(vidur.run_columns.RunColumns, "records", refuse)  # RequestRecord per request
    args = ["simulate", "--data-dir", str(data_dir), "--replicas", "4", "--num-requests", "2000", "--qps", "30"]
    args += ["--set", "workload.lengths.kind=trace", "--set", "workload.lengths.trace_path=splitwise_code.csv"]
    assert main([*args, "--set", "output.plots=false", "--output-dir", str(tmp_path / "run")]) == 0
    assert len((tmp_path / "run" / "requests.jsonl").read_text().splitlines()) == 2000
    # The plots draw from the columns too, and a run written in parts takes the same paths.
    assert main([*args, "--output-dir", str(tmp_path / "plotted")]) == 0
    assert (tmp_path / "plotted" / "latencies.png").stat().st_size > 10_000
    # The tripwires are live: metron's per-request scoring trips them.
    simulator = Simulator(plan_deployment(DeploymentConfig(), predictor))
    result = simulator.run(Workload.generated(WorkloadConfig(num_requests=5)))
    with pytest.raises(AssertionError, match="a per-request path was taken"):
        result.records(DeadlineConfig())
