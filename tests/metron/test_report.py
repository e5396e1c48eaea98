"""report.md says what a run was in words: its target (whichever kind), only the arrival settings
its arrival kind uses, its SLO, and tails that are each figure's worst."""

from pathlib import Path

import msgspec

from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestTimes, request_records
from metron.report import write_report
from metron.run_format import read_records, write_run
from metron.runner import RunConfig
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize
from metron.targets.engine import EngineTarget, EngineTargetConfig
from metron.workload import WorkloadConfig

DEADLINES = DeadlineConfig(ttft_s=0.1, tbt_s=0.1)


def report_of(tmp_path: Path, target: dict[str, object]) -> str:
    # Ten requests of 5 tokens at 50 ms gaps; request i also stalls i * 0.1 s before its last token.
    records = request_records(
        [
            RequestTimes(id=i, arrival_s=float(i), prompt_tokens=8, token_times_s=[i + 0.05 * k for k in range(1, 5)]
                         + [i + 0.25 + 0.1 * i])
            for i in range(10)
        ],
        DEADLINES,
    )
    slo = SloConfig()
    workload = WorkloadConfig(num_requests=10, arrivals=ArrivalConfig(kind="poisson", rate=4.0))
    config = {"run": msgspec.to_builtins(RunConfig(workload=workload, deadlines=DEADLINES, slo=slo)), "target": target}
    metrics = summarize(records, slo)
    write_run(tmp_path, records, metrics, config, evaluate_slo(metrics, slo))
    return write_report(tmp_path).read_text()


def test_the_report_names_an_engine_target_and_describes_poisson_and_the_slo_in_words(tmp_path: Path) -> None:
    report = report_of(tmp_path, EngineTarget(EngineTargetConfig(host="10.0.0.7", port=8101)).describe())
    assert "- target: engine at 10.0.0.7:8101\n" in report
    assert "arrivals poisson at 4.0 req/s;" in report
    assert "cv" not in report and "trace None" not in report
    assert "- SLO: P99 miss rate <= 0.1, error rate <= 0.01\n" in report
    assert "SloConfig" not in report and "'kind'" not in report


def test_the_report_names_a_simulated_target(tmp_path: Path) -> None:
    # What `metron.targets.vidur.VidurTarget.describe()` records.
    deployment = {"model": "meta-llama/Meta-Llama-3-8B", "gpu": "h100", "num_gpus": 2, "config": {}}
    report = report_of(tmp_path, {"kind": "vidur", "deployment": deployment})
    assert "- target: vidur simulation of meta-llama/Meta-Llama-3-8B on 2 x h100\n" in report


def test_fluidity_is_shown_by_its_worst_requests_not_its_best(tmp_path: Path) -> None:
    report = report_of(tmp_path, {"target": "openai", "url": "http://127.0.0.1:8000/v1", "model": "m"})
    metrics = summarize(read_records(tmp_path))
    best, worst = metrics["fluidity_index.p99"], metrics["miss_rate.p99"]
    assert isinstance(best, float) and isinstance(worst, float) and best > 1 - worst
    table = [line for line in report.splitlines() if line.startswith("| deadline miss rate")]
    assert table and f"| {worst:.4g} |" in table[0]
    assert not any(line.startswith("| fluidity-index") for line in report.splitlines())
    assert f"P1 {1 - worst:.4g} (the worst requests)" in report
    assert f"service miss rate {metrics['service_miss_rate']:.4g}" in report
