"""A run whose iteration records and token times were streamed to disk
(`Simulator.run(spill_directory=...)`, what `vidur simulate` does) is written exactly as one that
held them: the same files, byte for byte, but for the wall-clock figures; and `vidur simulate`
leaves no spilled files behind."""

import json
from pathlib import Path

import numpy as np
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.slo import SloConfig
from metron.workload import WorkloadConfig

from vidur import ClusterConfig, DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment
from vidur.cli import main
from vidur.output import write_simulated_run
from vidur.spilled_columns import SpilledColumns

WALL_CLOCK_KEYS = ("wall_s", "iterations_per_wall_s")


def _files(directory: Path) -> dict[str, bytes]:
    files = {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}
    simulation = json.loads(files.pop("simulation.json"))
    for key in WALL_CLOCK_KEYS:
        simulation.pop(key)
    files["simulation.json"] = json.dumps(simulation).encode()
    return files


def test_a_spilled_run_is_written_as_one_held(predictor: OperatorPredictor, tmp_path: Path) -> None:
    lengths = LengthConfig(kind="uniform", prompt_tokens=600, output_tokens=120)
    config = WorkloadConfig(num_requests=400, seed=3, arrivals=ArrivalConfig(rate=40.0), lengths=lengths)
    deployment = DeploymentConfig(cluster=ClusterConfig(num_replicas=3, router="least_outstanding"))
    simulator = Simulator(plan_deployment(deployment, predictor))
    workload = Workload.generated(config)
    deadlines, slo = DeadlineConfig(tbt_s=0.05, ttft_s=1.0), SloConfig()
    held = simulator.run(workload)
    assert isinstance(held.iterations, dict)
    for block_rows, limit_s in ((13, None), (1000, None), (13, held.end_s / 3)):
        held = simulator.run(workload, max_simulated_s=limit_s)
        spilled = simulator.run(
            workload,
            max_simulated_s=limit_s,
            spill_directory=tmp_path / f"spill-{block_rows}",
            spill_block_rows=block_rows,
        )
        assert isinstance(spilled.iterations, SpilledColumns)
        assert spilled.iterations.num_rows == len(held.iterations["start_s"]) > 3 * block_rows
        for name, values in held.iterations.items():
            assert spilled.iterations[name].dtype == values.dtype
            assert np.array_equal(spilled.iterations[name], values), name
        assert isinstance(spilled.requests["token_times"], np.memmap)
        for name, values in held.requests.items():
            assert spilled.requests[name].tobytes() == values.tobytes(), name
        kind = f"{block_rows}-{limit_s}"
        write_simulated_run(held, tmp_path / f"held-{kind}", deadlines=deadlines, slo=slo, trace_max_iterations=50)
        write_simulated_run(
            spilled, tmp_path / f"spilled-{kind}", deadlines=deadlines, slo=slo, trace_max_iterations=50
        )
        assert _files(tmp_path / f"spilled-{kind}") == _files(tmp_path / f"held-{kind}")


def test_a_run_without_iteration_records_spills_its_token_times(predictor: OperatorPredictor, tmp_path: Path) -> None:
    simulator = Simulator(plan_deployment(DeploymentConfig(), predictor))
    workload = Workload.generated(WorkloadConfig(num_requests=20))
    result = simulator.run(workload, record_iterations=False, spill_directory=tmp_path / "spill")
    assert [path.name for path in (tmp_path / "spill").iterdir()] == ["token_times.bin"]
    assert len(result.iterations) == 19 and all(len(values) == 0 for values in result.iterations.values())
    held = simulator.run(workload, record_iterations=False)
    assert result.requests["token_times"].tobytes() == held.requests["token_times"].tobytes()


def test_vidur_simulate_spills_beside_the_run_and_cleans_up(data_dir: Path, tmp_path: Path) -> None:
    args = ["simulate", "--data-dir", str(data_dir), "--replicas", "2", "--num-requests", "300", "--qps", "20"]
    assert main([*args, "--set", "output.plots=false", "--output-dir", str(tmp_path / "run")]) == 0
    assert [path.name for path in (tmp_path / "run").iterdir() if path.name.startswith(".")] == []
    rows = (tmp_path / "run" / "iterations.csv").read_text().splitlines()
    simulation = json.loads((tmp_path / "run" / "simulation.json").read_text())
    assert len(rows) - 1 == simulation["iterations"]["num_iterations"] > 300
