"""`vidur simulate --max-simulated-seconds S` stops the run at simulated time S and writes what
happened until then, as metron writes a run stopped early: the requests that arrived by S, those
unfinished then interrupted with the tokens they had, the later ones left out, and the summary
saying so. The reference is the whole run, cut by hand and written by metron's own writer."""

import json
from pathlib import Path

import msgspec
import pytest
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestTimes, request_records
from metron.run_format import read_run, write_run
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize

from vidur.cli import main

RUN = [
    "simulate",
    "--replicas",
    "2",
    "--num-requests",
    "300",
    "--qps",
    "12",
    "--set",
    "workload.lengths.kind=uniform",
    "--set",
    "workload.lengths.prompt_tokens=1500",
    "--set",
    "workload.lengths.output_tokens=150",
    "--set",
    "output.plots=false",
]
LIMIT_S = 12.0


def cut_by_hand(whole: list[RequestTimes], limit_s: float) -> list[RequestTimes]:
    """What a run stopped at `limit_s` measured of the whole run's requests."""
    cut = []
    for request in whole:
        if request.arrival_s > limit_s:
            continue
        times = [t for t in request.token_times_s if t <= limit_s]
        finished = len(times) == len(request.token_times_s)
        cut.append(
            msgspec.structs.replace(
                request,
                token_times_s=times,
                interrupted=not finished,
                scheduling_delay_s=request.scheduling_delay_s if finished else None,
            )
        )
    return cut


def test_a_cut_run_is_the_whole_run_up_to_the_cut_as_metron_writes_a_stopped_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [*RUN, "--data-dir", str(data_dir)]
    assert main([*common, "--output-dir", str(tmp_path / "whole")]) == 0
    assert main([*common, "--output-dir", str(tmp_path / "cut"), "--max-simulated-seconds", str(LIMIT_S)]) == 0
    printed = capsys.readouterr().out
    whole, cut = read_run(tmp_path / "whole"), read_run(tmp_path / "cut")
    assert "cut" not in whole.config and "interrupted" not in whole.config

    measured = [
        RequestTimes(
            id=r.id,
            arrival_s=r.arrival_s,
            prompt_tokens=r.prompt_tokens,
            token_times_s=r.token_times_s,
            requested_output_tokens=r.requested_output_tokens,
            scheduling_delay_s=r.scheduling_delay_s,
        )
        for r in whole.records
    ]
    expected = cut_by_hand(measured, LIMIT_S)
    deadlines = msgspec.convert(whole.config["deadlines"], DeadlineConfig)
    records = request_records(expected, deadlines)
    num_unfinished = sum(r.outcome == "interrupted" for r in records)
    num_not_arrived = len(measured) - len(records)
    assert num_unfinished > 0 and num_not_arrived > 0 and len(records) > num_unfinished
    assert cut.records == records
    slo = msgspec.convert(whole.config["slo"], SloConfig)
    metrics = summarize(records, slo)
    assert cut.metrics == metrics
    assert metrics["num_interrupted"] == num_unfinished

    assert cut.config["interrupted"] is True
    assert cut.config["cut"] == {
        "max_simulated_seconds": LIMIT_S,
        "num_unfinished": num_unfinished,
        "num_not_arrived": num_not_arrived,
    }
    simulation = json.loads((tmp_path / "cut" / "simulation.json").read_text())
    assert simulation["cut"] == cut.config["cut"]
    assert f"{num_unfinished} requests unfinished (interrupted), {num_not_arrived} not arrived" in printed

    # The files are metron's writer's, byte for byte; the verdict is its runner's on a run
    # interrupted with requests unfinished and unsent.
    verdict = evaluate_slo(metrics, slo, num_planned=len(measured))
    assert not verdict.passed and evaluate_slo(metrics, slo).passed
    assert f"SLO ({slo.kind}): {verdict.describe()}" in printed
    assert f"num_unmeasured_requests {num_unfinished + num_not_arrived} > 0" in printed
    write_run(tmp_path / "metron", records, metrics, cut.config, verdict)
    for name in ("requests.jsonl", "requests.csv", "summary.json", "summary.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "metron" / name).read_bytes(), name

    def iteration_starts(run: str) -> list[float]:
        rows = (tmp_path / run / "iterations.csv").read_text().splitlines()[1:]
        return [float(row.split(",")[1]) for row in rows]

    assert iteration_starts("cut") == [t for t in iteration_starts("whole") if t <= LIMIT_S]

    # The config file's knob does the same.
    knob = ["--set", f"output.max_simulated_seconds={LIMIT_S}"]
    assert main([*common, "--output-dir", str(tmp_path / "knob"), *knob]) == 0
    assert (tmp_path / "knob" / "requests.jsonl").read_bytes() == (tmp_path / "cut" / "requests.jsonl").read_bytes()


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "inf"])
def test_a_limit_that_is_not_a_positive_time_names_the_flag(
    data_dir: Path, limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*RUN, "--data-dir", str(data_dir), "--max-simulated-seconds", limit]) == 2
    message = f"vidur: error: --max-simulated-seconds must be a positive number of seconds, got {float(limit)}"
    assert message in capsys.readouterr().err


def test_a_workload_of_sessions_is_not_cut(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A later turn is sent when the turn before ends, so the requests sent by a cut need not be
    # the workload's first ones, which is what a cut run keeps.
    sessions = ["--set", "workload.sessions.num_turns=3", "--output-dir", str(tmp_path / "run")]
    assert main([*RUN, "--data-dir", str(data_dir), *sessions, "--max-simulated-seconds", "5"]) == 2
    assert "cannot cut a workload of multi-turn sessions" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
