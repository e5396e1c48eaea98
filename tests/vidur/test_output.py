"""A simulated run is written in the shared run format with metron's own writer, so metron reads
it back like a real run; the simulator's own files sit beside it."""

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from metron.deadlines import DeadlineConfig
from metron.run_format import read_run
from metron.slo import SloConfig

from vidur import Simulator, Workload, score, simulated_prefill_model, write_simulated_run


def test_a_simulated_run_reads_back_as_a_metron_run(
    llama7b_h100: Simulator, make_workload: Callable[..., Workload], tmp_path: Path
) -> None:
    workload = make_workload(300, rate=5.0, seed=2, prompt=(20, 1500), output=(1, 120))
    result = llama7b_h100.run(workload)
    deadlines = DeadlineConfig(tbt_s=0.05, ttft_s=1.0)
    slo = SloConfig(kind="tbt_ttft", p99_tbt_s=0.05, p90_ttft_s=1.0)
    scored = write_simulated_run(result, tmp_path, deadlines=deadlines, slo=slo, trace_max_iterations=500)

    run = read_run(tmp_path)
    assert run.records == scored.records == result.records(deadlines)
    assert run.metrics == scored.metrics
    assert run.config["target"] == "vidur"
    assert run.slo is not None and run.slo["passed"] == scored.verdict.passed  # type: ignore[union-attr]
    first = run.records[0]
    assert first.token_times_s == result.token_times(0).tolist()
    assert first.ttft_s == pytest.approx(first.token_times_s[0] - first.arrival_s)
    assert first.scheduling_delay_s is not None and first.scheduling_delay_s >= 0

    with (tmp_path / "iterations.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == result.num_iterations
    assert sum(int(r["num_sampled"]) for r in rows) == int(workload.output_tokens.sum())

    trace = json.loads((tmp_path / "trace.json").read_text())
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == 500 == trace["otherData"]["iterations_written"]
    assert slices[0]["ts"] == pytest.approx(result.iterations["start_s"][0] * 1e6)

    simulation = json.loads((tmp_path / "simulation.json").read_text())
    utilization = simulation["utilization"]
    assert 0 < utilization["mfu"] < utilization["mfu_busy"] < 1
    assert 0 < utilization["mbu"] < 1
    assert simulation["iterations"]["num_iterations"] == result.num_iterations
    assert (tmp_path / "latencies.png").stat().st_size > 0 and (tmp_path / "iterations.png").stat().st_size > 0


def test_scoring_without_writing_matches_and_the_simulated_prefill_deadline_is_sane(
    llama7b_h100: Simulator, make_workload: Callable[..., Workload]
) -> None:
    model = simulated_prefill_model(llama7b_h100)
    cost = llama7b_h100.cost_model
    for prompt in (100, 500, 3000):
        # TTFT of one prompt on an idle replica, chunked into 512-token iterations.
        chunks = [(min(512, prompt - start), start, True, start + 512 >= prompt) for start in range(0, prompt, 512)]
        simulated = sum(cost.predict([chunk]).latency_s for chunk in chunks)
        # metron fits a quadratic by least squares: within 10% or 5 ms of the chunked staircase.
        assert model.predict_s(prompt) == pytest.approx(simulated, rel=0.1, abs=0.005)
    result = llama7b_h100.run(make_workload(50, rate=2.0, seed=5, prompt=(20, 200), output=(2, 20)))
    scored = score(result, DeadlineConfig(prefill=model), SloConfig())
    assert scored.verdict is not None and scored.verdict.passed
    assert scored.metrics["num_finished"] == 50
