"""The shared run directory round-trips, and bad directories give clear errors."""

import csv
import json
from pathlib import Path

import pytest

from metron.deadlines import DeadlineConfig
from metron.metrics import RequestTimes, request_records
from metron.run_format import read_run, read_summary, write_run
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize
from metron.workload import WorkloadConfig


def test_a_run_round_trips(tmp_path: Path) -> None:
    deadlines = DeadlineConfig(ttft_s=1.0, tbt_s=0.1)
    records = request_records(
        [
            RequestTimes(id=0, arrival_s=0.0, prompt_tokens=4, token_times_s=[0.25, 0.5], requested_output_tokens=2),
            RequestTimes(id=1, arrival_s=0.5, prompt_tokens=4, token_times_s=[0.75], requested_output_tokens=2),
            RequestTimes(id=2, arrival_s=0.6, prompt_tokens=4, token_times_s=[], error="connection reset"),
        ],
        deadlines,
    )
    slo = SloConfig()
    metrics = summarize(records, slo)
    config = {"workload": WorkloadConfig(num_requests=3), "deadlines": deadlines, "slo": slo}
    write_run(tmp_path / "run", records, metrics, config, evaluate_slo(metrics, slo))

    run = read_run(tmp_path / "run")
    assert run.records == records
    assert run.metrics == metrics
    assert run.config["workload"]["num_requests"] == 3  # type: ignore[index]
    assert run.slo is not None and run.slo["passed"] is False

    lines = (tmp_path / "run" / "requests.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    for key in ("id", "arrival_s", "prompt_tokens", "output_tokens", "token_times_s", "ttft_s", "tbt_s", "e2e_s"):
        assert key in first
    for key in ("normalized_latency_s", "scheduling_delay_s", "fluidity_index", "finished", "error"):
        assert key in first
    assert first["token_times_s"] == [0.25, 0.5] and first["tbt_s"] == [0.25]
    assert json.loads(lines[1])["outcome"] == "ended_early"

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["format"] == "servekit-run/1" and summary["metrics"]["ttft_s.p50"] == metrics["ttft_s.p50"]
    with (tmp_path / "run" / "summary.csv").open() as file:
        rows = {row["key"]: row["value"] for row in csv.DictReader(file)}
    assert float(rows["ttft_s.max"]) == pytest.approx(0.25)
    with (tmp_path / "run" / "requests.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [row["outcome"] for row in table] == ["finished", "ended_early", "error"]
    assert table[2]["error"] == "connection reset" and table[2]["ttft_s"] == ""


def test_reading_something_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="summary.json is missing"):
        read_run(tmp_path)
    (tmp_path / "summary.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="is not a servekit-run/1 summary"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{"format": "servekit-run/1", "config": {}, "metrics": {}}')
    (tmp_path / "requests.jsonl").write_text('{"id": "seven"}\n')
    with pytest.raises(ValueError, match="requests.jsonl, line 1"):
        read_run(tmp_path)
