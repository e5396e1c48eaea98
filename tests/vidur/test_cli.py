"""The `vidur` command end to end: config files (TOML and YAML) with overrides, outputs, errors."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from metron.run_format import read_run
from metron.traces import read_trace_column

from vidur import Simulator, _simulator
from vidur.cli import main, parser
from vidur.deployment import POLICIES, ROUTERS

TOML = """
[replica]
model = "llama-3-8b"
gpu = "a100"

[scheduler]
policy = "sarathi"
token_budget = 256

[workload]
num_requests = 80
seed = 3

[workload.arrivals]
kind = "trace"
trace_path = "splitwise_code.csv"
rate_scale = 2.0

[workload.lengths]
kind = "trace"
trace_path = "splitwise_code.csv"
shuffle = false

[deadlines]
tbt_s = 0.05

[slo]
kind = "deadline"

[output]
trace_max_iterations = 100
plots = false
"""

YAML = """
replica: {model: phi-2, gpu: a40}
cluster: {num_replicas: 2, router: least_outstanding}
workload:
  num_requests: 40
  arrivals: {kind: poisson, rate: 3.0}
  lengths: {kind: uniform, prompt_tokens: 600, output_tokens: 40}
output: {plots: false}
"""


def test_simulate_from_a_toml_file_with_overrides(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(TOML)
    out = tmp_path / "out"
    code = main(
        [
            "simulate",
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(out),
            "--set",
            "cluster.seed=9",
            "--gpu",
            "h100",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "meta-llama/Meta-Llama-3-8B on 1 x 1 h100 (sarathi): 80 requests" in printed
    run = read_run(out)
    deployment = run.config["deployment"]
    assert deployment["gpu"] == "h100" and deployment["token_budget"] == 256  # type: ignore[index]
    assert deployment["config"]["cluster"]["seed"] == 9  # type: ignore[index]
    assert len(run.records) == 80 and run.metrics["num_finished"] == 80
    # The recorded splitwise_code prompts, in order (clipped to the context length).
    assert run.records[0].prompt_tokens == 4808
    simulation = json.loads((out / "simulation.json").read_text())
    assert simulation["trace_iterations_written"] == 100
    assert not (out / "latencies.png").exists()


def test_simulate_from_yaml_with_two_replicas(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(YAML)
    assert (
        main(["simulate", "--config", str(config), "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "o")])
        == 0
    )
    records = read_run(tmp_path / "o").records
    assert len(records) == 40 and all(r.finished for r in records)


def test_search_prints_the_best_and_writes_the_frontier(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["search", "--data-dir", str(data_dir), "--output-dir", str(tmp_path), "--workers", "1", "--no-progress"]
    args += ["--set", "search.gpus=[h100]", "--set", "search.tensor_parallel=[1]", "--set", "search.precision=0.25"]
    args += ["--num-requests", "60", "--set", "workload.lengths.kind=uniform", "--set", "search.initial_qps=8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "best: h100 tp=1 pp=1 x1 sarathi budget=512 seqs=128" in printed
    document = json.loads((tmp_path / "search.json").read_text())
    assert document["best"]["capacity_qps"] > 0 and document["frontier"] == [document["best"]["name"]]


def test_errors_exit_with_a_message(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--data-dir", str(data_dir), "--gpu", "tpu"]) == 2
    assert "vidur: error: unknown GPU 'tpu'" in capsys.readouterr().err
    assert main(["simulate", "--data-dir", str(data_dir), "--tp", "5"]) == 2
    assert "tensor_parallel=5 does not divide" in capsys.readouterr().err
    assert main(["simulate", "--data-dir", str(data_dir), "--trace", "missing.csv"]) == 2
    assert "trace 'missing.csv' not found" in capsys.readouterr().err


def test_predictor_and_catalogue_commands(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predictor", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["interpolation"]["layer_mape"] < 0.05
    assert set(report["roofline_leave_one_model_out"]) == {"a100", "a40", "h100"}
    attention = report["attention"]
    assert attention["holdout_every"] == 4 and attention["num_points"] > 1000 and attention["mape"] < 0.1
    assert attention["gpus"]["a100"]["backend"] == "FLASH_ATTENTION"
    assert set(attention["gpus"]["h100"]["kernels"]) == {"attn_prefill", "attn_decode"}
    assert main(["catalogue"]) == 0
    listing = capsys.readouterr().out
    assert "mistralai/Mistral-7B-v0.1" in listing and "h200" in listing


@pytest.mark.parametrize("max_model_len", [2, 3, 16, 17, 40])
def test_a_short_context_simulates_with_prompts_that_fit(
    data_dir: Path, max_model_len: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--data-dir", str(data_dir), "--num-requests", "20", "--set", "workload.lengths.kind=uniform"]
    assert main(args + ["--set", f"scheduler.max_model_len={max_model_len}"]) == 0
    assert "num_finished                       20" in capsys.readouterr().out


def test_the_command_offers_every_policy_and_router_the_simulator_has(llama7b_h100: Simulator) -> None:
    """One list of policies and routers (vidur.deployment), the one the CLI offers and the Rust
    side accepts."""
    simulate = parser().parse_args(["simulate"])
    assert simulate.command == "simulate"
    for policy in POLICIES:
        assert parser().parse_args(["simulate", "--policy", policy]).policy == policy
    for router in ROUTERS:
        assert parser().parse_args(["simulate", "--router", router]).router == router
    with pytest.raises(SystemExit):
        parser().parse_args(["simulate", "--policy", "fifo"])
    for policy in POLICIES:
        _simulator.SchedulerConfig(policy=policy, token_budget=4096, max_model_len=4096)
    caching = dataclasses.replace(llama7b_h100.deployment.config.scheduler, enable_prefix_caching=True)
    for router in ROUTERS:  # prefix_affinity needs the prefix cache
        _simulator.simulate(
            cost_model=llama7b_h100.cost_model,
            scheduler=caching.resolve(4096, 1024),
            arrival_times=[0.0],
            num_prompt_tokens=[10],
            num_output_tokens=[1],
            num_replicas=2,
            router=router,
        )


def test_simulate_caches_the_predictor_and_prints_both_times(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--data-dir", str(data_dir), "--num-requests", "20", "--predictor-cache-dir", str(tmp_path)]
    assert main(args) == 0
    assert len(list(tmp_path.glob("predictor-*.pickle"))) == 1
    assert main(args) == 0
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line.startswith("time: simulation ") and " s, whole command " in last_line
    assert len(list(tmp_path.glob("predictor-*.pickle"))) == 1
    assert main([*args[:-2], "--no-predictor-cache"]) == 0


def test_over_long_trace_requests_keep_their_output_and_the_run_says_so(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "conv"
    args = ["simulate", "--data-dir", str(data_dir), "--trace", "splitwise_conv.csv", "--num-requests", "400"]
    assert main([*args, "--output-dir", str(out), "--set", "output.plots=false"]) == 0
    run = read_run(out)
    lengths = run.config["workload"]["lengths"]  # type: ignore[index]
    assert lengths["clip"] == "keep_output" and lengths["max_total_tokens"] == 4096
    trace = data_dir / "traces" / "splitwise_conv.csv"
    prompts = read_trace_column(trace, "num_prefill_tokens")[:400].astype(int)
    outputs = read_trace_column(trace, "num_decode_tokens")[:400].astype(int)
    assert (prompts + outputs > 4096).sum() > 10  # some do not fit Llama-2-7B's context
    assert [r.requested_output_tokens for r in run.records] == outputs.tolist()
    assert [r.prompt_tokens for r in run.records] == np.minimum(prompts, 4096 - outputs).tolist()


@pytest.mark.parametrize("qps", ["0", "-1", "nan"])
@pytest.mark.parametrize("arrivals", [["--trace", "splitwise_conv.csv"], ["--set", "workload.arrivals.kind=poisson"]])
def test_a_rate_that_is_not_positive_names_the_flag(
    data_dir: Path, qps: str, arrivals: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--data-dir", str(data_dir), *arrivals, "--qps", qps]) == 2
    assert f"vidur: error: --qps must be a positive number of requests/s, got {float(qps)}" in capsys.readouterr().err


def test_simulate_writes_metrons_report_of_the_simulated_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--data-dir", str(data_dir), "--num-requests", "30", "--gpu", "a100", "--tp", "2"]
    assert main([*args, "--set", "workload.lengths.kind=uniform", "--output-dir", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith(f"# vidur simulation: {out.name}\n")
    assert "- target: vidur simulation of meta-llama/Llama-2-7b-hf on 2 x a100\n" in report
    assert "- workload: 30 requests (+0 warm-up), seed 0; arrivals poisson at 1.0 req/s; lengths uniform\n" in report
    assert "- SLO: " in report and "- SLO verdict: **PASS**" in report
    assert "30 requests: 30 finished" in report
    assert (out / "latency_cdfs.png").stat().st_size > 0


def test_the_catalogue_lists_aliases_and_the_profiled_pairs(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (data_dir / "profiling" / "compute" / "h100" / "meta-llama" / "Llama-2-7b-hf" / "mlp.csv").is_file()
    assert main(["catalogue", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = next(line for line in lines if line.strip().startswith("meta-llama/Llama-2-7b-hf "))
    assert model.endswith("aliases: llama-2-7b")
    gpu = next(line for line in lines if line.strip().startswith("a100 "))
    assert gpu.endswith("aliases: a100-80gb, a100_80gb")
    pairs = lines[lines.index(next(line for line in lines if line.startswith("profiled (GPU, model) pairs"))) :]
    assert any(line.split()[:2] == ["h100", "meta-llama/Llama-2-7b-hf"] for line in pairs)
    # Mistral-7B has no tables of its own; Llama-3-8B's fit its layer shape, where there are some.
    mistral = next(line for line in pairs if line.split()[:2] == ["a100", "mistralai/Mistral-7B-v0.1"])
    assert "meta-llama/Meta-Llama-3-8B's tables" in mistral
    assert not any(line.split()[:2] == ["h100", "mistralai/Mistral-7B-v0.1"] for line in pairs)
    assert any(line.strip().startswith("h200") and "h100's" in line for line in pairs)
