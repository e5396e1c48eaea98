"""`vidur validate` end to end, tiny: the demo model's shape profiled here, a real engine started
by the command, two loads, the same requests simulated, and the report written. Asserts the
pipeline and the report, not how close the figures are (a shared CPU is too noisy for that:
benchmarks/fidelity.py measures it)."""

import json
import math
from pathlib import Path

import pytest

from vidur.cli import main

ERRORS = (
    "normalized_latency_p50",
    "normalized_latency_p95",
    "ttft_p50",
    "ttft_p95",
    "tbt_p50",
    "tbt_p95",
    "request_throughput",
    "output_token_throughput",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.demo_model import build_demo_model

    directory = tmp_path_factory.mktemp("demo")
    build_demo_model(directory)
    return directory


def test_validate_runs_the_engine_and_the_simulator_on_the_same_requests(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "validate"
    engine_args = f"--model {model_dir} --num-kv-blocks 64 --max-num-seqs 8 --token-budget 64 --max-model-len 256"
    args = ["validate", "--engine-args", engine_args, "--num-requests", "8", "--loads", "0.5", "0.9"]
    args += ["--set", "workload.lengths.prompt_tokens=40", "--set", "workload.lengths.output_tokens=4"]
    args += ["--profile-repeats", "1", "--output-dir", str(output)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "engine capacity" in printed and "50% (" in printed and "90% (" in printed

    report = json.loads((output / "validation.json").read_text())
    assert report["capacity_qps"] > 0
    assert report["engine"]["scheduler"]["token_budget"] == 64 and report["engine"]["num_kv_blocks"] == 64
    assert report["cpu_overheads"].startswith("[cpu_overheads]")
    assert [load["load"] for load in report["loads"]] == [0.5, 0.9]
    for load in report["loads"]:
        assert load["num_requests"] == 8
        assert load["qps"] == pytest.approx(load["load"] * report["capacity_qps"])
        assert set(load["errors"]) == set(ERRORS) and all(math.isfinite(e) for e in load["errors"].values())
        assert "| ttft_s.p50 |" in load["compare_table"]
        batches = load["batches"]
        # 8 requests of 40 prompt tokens (41 with BOS) and 4 outputs: every prompt once, every
        # output but the last of each run through the model, in the engine as in the simulator.
        assert batches["num_engine_iterations"] > 0 and batches["num_simulated_iterations"] > 0
        assert load["iteration_times"]["forward_mape"] is not None
    for run in ("engine", "vidur"):
        assert (output / "load_0.5" / run / "requests.jsonl").is_file()
    assert (output / "load_0.9" / "vidur" / "iterations.csv").is_file()
    assert (output / "profile" / "compute" / "cpu" / "device.json").is_file()
    assert "# vidur validate" in (output / "validation.md").read_text()


def test_validate_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--address", "127.0.0.1:9", "--output-dir", str(tmp_path)]) == 2
    assert "needs --iteration-log" in capsys.readouterr().err
    assert main(["validate", "--engine-args=--port 8000", "--output-dir", str(tmp_path)]) == 2
    assert "--port is set by vidur validate" in capsys.readouterr().err
    assert main(["validate", "--engine-args=--no-such-flag", "--output-dir", str(tmp_path)]) == 2
    assert "does not accept" in capsys.readouterr().err
