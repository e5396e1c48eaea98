"""Scoring a simulated run from its columns gives exactly what metron's per-request path gives:
every record field, every summary figure (same keys, same order, same floats), and the same
files, byte for byte (`iterations.csv` as Python's csv module writes the columns)."""

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from metron.deadlines import DeadlineConfig
from metron.run_format import REQUEST_CSV_COLUMNS, read_records, write_run
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize

from support.simulated_files import assert_files_are_metrons
from vidur import (
    DeploymentConfig,
    OperatorPredictor,
    SimulationResult,
    Simulator,
    Workload,
    _simulator,
    plan_deployment,
    score,
    simulated_prefill_model,
)

SLOS = [
    None,
    SloConfig(kind="deadline", max_miss_rate=0.05, p50_scheduling_delay_s=0.5),
    SloConfig(kind="tbt_ttft", p99_tbt_s=0.03, p90_ttft_s=1.0),
    SloConfig(kind="ttft_tpot", p90_ttft_s=0.5, p90_tpot_s=0.02),
    SloConfig(kind="tbt_ttft", p99_tbt_s=0.03, p90_ttft_s=1.0, tbt_percentile=95, ttft_percentile=99.9),
    SloConfig(kind="deadline", miss_rate_percentile=75, p50_scheduling_delay_s=0.5, scheduling_delay_percentile=90),
]


@pytest.fixture(scope="module")
def short_context(predictor: OperatorPredictor) -> Simulator:
    """A 1,024-token context: longer requests end early at the cap or are refused."""
    base = DeploymentConfig()
    config = dataclasses.replace(base, scheduler=dataclasses.replace(base.scheduler, max_model_len=1024))
    return Simulator(plan_deployment(config, predictor))


@pytest.fixture(scope="module")
def every_outcome(short_context: Simulator) -> SimulationResult:
    """400 requests, some warm-up, some ending early at the context, some refused, under load."""
    rng = np.random.default_rng(11)
    num = 400
    workload = Workload(
        ids=np.arange(num),
        arrival_s=np.cumsum(rng.exponential(1 / 12.0, num)),
        prompt_tokens=rng.integers(20, 1100, num),
        output_tokens=rng.integers(1, 300, num),
        warmup=rng.random(num) < 0.05,
    )
    result = short_context.run(workload)
    outcomes = {record.outcome for record in result.records(DeadlineConfig())}
    assert outcomes == {"finished", "ended_early", "error"}
    return result


@pytest.mark.parametrize("slo", SLOS, ids=["no-slo", "deadline", "tbt_ttft", "ttft_tpot", "tbt_ttft-p95", "deadline-p75"])
def test_records_and_summary_equal_metrons(
    every_outcome: SimulationResult, short_context: Simulator, slo: SloConfig | None
) -> None:
    simulated = DeadlineConfig(prefill=simulated_prefill_model(short_context))
    for deadlines in (DeadlineConfig(tbt_s=0.03, ttft_s=0.5), simulated):
        records = every_outcome.records(deadlines)
        scored = score(every_outcome, deadlines, slo)
        assert scored.records == records
        expected = summarize(records, slo)
        assert list(scored.metrics) == list(expected)
        assert scored.metrics == expected
        if slo is not None:
            assert scored.verdict == evaluate_slo(expected, slo)


def test_a_run_of_finished_requests_scores_the_same(llama7b_h100: Simulator, make_workload: object) -> None:
    workload = make_workload(300, 4.0, 5, prompt=(10, 2000), output=(1, 200))  # type: ignore[operator]
    result = llama7b_h100.run(workload)
    deadlines = DeadlineConfig(tbt_s=0.02, ttft_s=0.3)
    scored = score(result, deadlines, SLOS[2])
    assert scored.records == result.records(deadlines)
    assert scored.metrics == summarize(result.records(deadlines), SLOS[2])


def python_csv(columns: dict[str, np.ndarray]) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*(values.tolist() for values in columns.values()), strict=True))
    return table.getvalue()


def test_the_files_are_the_per_request_paths_byte_for_byte(every_outcome: SimulationResult, tmp_path: Path) -> None:
    deadlines, slo = DeadlineConfig(tbt_s=0.03, ttft_s=0.5), SloConfig(max_miss_rate=0.05, p50_scheduling_delay_s=0.5)
    assert_files_are_metrons(every_outcome, tmp_path, deadlines, slo)
    assert (tmp_path / "columns" / "iterations.csv").read_text() == python_csv(every_outcome.iterations)
    header = (tmp_path / "columns" / "requests.csv").read_text().splitlines()[0]
    assert header == ",".join(REQUEST_CSV_COLUMNS)
    trace = json.loads((tmp_path / "columns" / "trace.json").read_text())
    slices = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    assert len(slices) == every_outcome.num_iterations
    assert [s["args"]["num_seqs"] for s in slices] == every_outcome.iterations["num_seqs"].tolist()


def test_error_messages_are_escaped_as_metron_writes_them(every_outcome: SimulationResult, tmp_path: Path) -> None:
    columns = score(every_outcome, DeadlineConfig(tbt_s=0.03, ttft_s=0.5)).columns
    odd = ['refused: 5, "too long"', "line\nbreak", "carriage\rreturn", "tab\tbell\x07\x08\x0c", "é ü \u2028 \\"]
    columns = dataclasses.replace(columns, errors={i: message for i, message in enumerate(odd)})
    columns.write_request_files(tmp_path / "requests.jsonl", tmp_path / "requests.csv")
    write_run(tmp_path / "metron", columns.records(), {}, {})
    for name in ("requests.jsonl", "requests.csv"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "metron" / name).read_bytes(), name
    assert [r.error for r in read_records(tmp_path)][: len(odd)] == odd


def test_the_writer_reads_arrays_in_place_and_names_a_column_it_cannot_read(
    every_outcome: SimulationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = score(every_outcome, DeadlineConfig(tbt_s=0.03, ttft_s=0.5)).columns
    handed = []
    write = _simulator.write_request_files
    monkeypatch.setattr(_simulator, "write_request_files", lambda *args: handed.append(args))
    columns.write_request_files(tmp_path / "requests.jsonl", tmp_path / "requests.csv")
    jsonl, csv_path, arrays, errors, tbt_deadline_s = handed[0]
    assert arrays["token_times_s"] is columns.token_times_s  # the float64 times are not copied
    as_bytes: dict[str, np.ndarray | bytes] = {name: np.asarray(values).tobytes() for name, values in arrays.items()}
    write(tmp_path / "bytes.jsonl", tmp_path / "bytes.csv", as_bytes, errors, tbt_deadline_s)
    write(jsonl, csv_path, arrays, errors, tbt_deadline_s)
    assert (tmp_path / "bytes.jsonl").read_bytes() == jsonl.read_bytes()
    for name, bad, message in [
        ("ttft_s", arrays["ttft_s"][::2], "the column ttft_s must be a contiguous buffer"),
        ("e2e_s", arrays["e2e_s"].astype(np.float32), "e2e_s must be float64 values, got items of 4 bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            write(jsonl, csv_path, arrays | {name: bad}, errors, tbt_deadline_s)
