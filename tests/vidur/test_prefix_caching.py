"""Prefix caching in simulation: metron's shared-prefix, multi-turn workloads replayed closed
loop (a later turn sent its think time after the turn before ended), each request's cached
prompt tokens and the run's hit rate in its records, summary and report, scored as metron
scores a real run of the same requests."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.load_generator import LoadConfig
from metron.runner import RunConfig
from metron.sessions import SessionConfig
from metron.slo import SloConfig
from metron.summary import summarize
from metron.targets.vidur import VidurTarget
from metron.workload import WorkloadConfig, generate_workload

from support.simulated_files import assert_files_are_metrons
from support.virtual_clock import measure_on_a_virtual_clock
from vidur import DeploymentConfig, OperatorPredictor, SimulationResult, Simulator, Workload, plan_deployment, score
from vidur.cli import main

# Turns grow by up to 300 + 150 tokens, so some third turns outgrow the 1,024-token context and
# are refused; their session goes on after the refusal (to a fourth turn, refused too), as
# metron's does after an error.
SESSIONS = WorkloadConfig(
    num_requests=240,
    num_warmup_requests=6,
    seed=2,
    arrivals=ArrivalConfig(kind="poisson", rate=3.0),
    lengths=LengthConfig(
        kind="uniform", min_prompt_tokens=20, prompt_tokens=300, min_output_tokens=1, output_tokens=150
    ),
    shared_prefix_tokens=200,
    sessions=SessionConfig(num_turns=4, think_time_s=1.5),
)


def simulator(predictor: OperatorPredictor, caching: bool) -> Simulator:
    base = DeploymentConfig()
    scheduler = dataclasses.replace(base.scheduler, max_model_len=1024, enable_prefix_caching=caching)
    return Simulator(plan_deployment(dataclasses.replace(base, scheduler=scheduler), predictor))


@pytest.fixture(scope="module")
def workload() -> Workload:
    return Workload.from_requests(generate_workload(SESSIONS), SESSIONS.shared_prefix_tokens)


@pytest.fixture(scope="module")
def cached_run(predictor: OperatorPredictor, workload: Workload) -> SimulationResult:
    return simulator(predictor, caching=True).run(workload)


def test_a_later_turn_is_sent_its_think_time_after_the_turn_before_ended(
    cached_run: SimulationResult, workload: Workload
) -> None:
    sent, requests = cached_run.workload, cached_run.requests
    assert sent.scheduled_arrival_s is workload.arrival_s
    assert workload.follows is not None
    later = np.flatnonzero(workload.follows >= 0)
    before = workload.follows[later]
    assert len(later) == 246 - SESSIONS.sessions.num_sessions(246)
    ended = requests["finished_s"][before]
    refused = np.array([i in cached_run.rejections for i in before.tolist()])
    assert refused.any() and not refused.all()
    ended[refused] = sent.arrival_s[before[refused]]  # a refusal ends a turn when it is sent
    np.testing.assert_array_equal(sent.arrival_s[later], ended + 1.5)
    assert (sent.arrival_s[later] >= workload.arrival_s[later]).all()
    first = np.flatnonzero(workload.follows < 0)
    np.testing.assert_array_equal(sent.arrival_s[first], workload.arrival_s[first])


def test_turns_find_their_conversation_and_first_turns_the_shared_prefix_cached(
    cached_run: SimulationResult, workload: Workload
) -> None:
    cached = cached_run.cached_prompt_tokens()
    assert cached is not None and workload.follows is not None
    ran = cached >= 0
    first, later = ran & (workload.follows < 0), ran & (workload.follows >= 0)
    # Whole 16-token blocks: of the system prompt (12 of its 200 tokens' blocks) once any run
    # has computed it, of the conversation so far for later turns.
    assert (cached[ran] % 16 == 0).all()
    assert (cached[first][1:] == 192).mean() > 0.9 and cached[first].max() == 192
    history = workload.prompt_tokens[workload.follows[later]] + workload.output_tokens[workload.follows[later]]
    assert (cached[later] <= history - 1).all() and (cached[later] > 192).mean() > 0.9


def test_the_run_scores_as_metron_scores_the_same_records(cached_run: SimulationResult, tmp_path: Path) -> None:
    deadlines, slo = DeadlineConfig(tbt_s=0.03, ttft_s=0.5), SloConfig(kind="tbt_ttft", p99_tbt_s=0.05, p90_ttft_s=1)
    records = cached_run.records(deadlines)
    assert {r.outcome for r in records} == {"finished", "ended_early", "error"}
    scored = score(cached_run, deadlines, slo)
    assert scored.records == records
    metrics = summarize(records, slo)
    assert scored.metrics == metrics and list(scored.metrics) == list(metrics)
    completed = [r for r in records if not r.warmup and r.outcome != "error"]
    hit_rate = sum(r.cached_prompt_tokens or 0 for r in completed) / sum(r.prompt_tokens for r in completed)
    assert metrics["cached_prompt_fraction"] == hit_rate and 0.5 < hit_rate < 0.9
    lag = metrics["send_lag_s.max"]
    assert isinstance(lag, float) and lag > 1.5  # a later turn waits for the turn before
    assert_files_are_metrons(cached_run, tmp_path, deadlines, slo)


def test_without_the_cache_nothing_is_cached_and_prefill_costs_more(
    predictor: OperatorPredictor, workload: Workload, cached_run: SimulationResult
) -> None:
    uncached = simulator(predictor, caching=False).run(workload)
    assert uncached.cached_prompt_tokens() is None
    deadlines = DeadlineConfig()
    records = uncached.records(deadlines)
    assert {r.cached_prompt_tokens for r in records} == {None}
    assert score(uncached, deadlines).metrics["cached_prompt_fraction"] is None
    ttft = [score(run, deadlines).metrics["ttft_s.p50"] for run in (cached_run, uncached)]
    assert isinstance(ttft[0], float) and isinstance(ttft[1], float) and ttft[0] < 0.8 * ttft[1]


def test_metron_sends_the_sessions_to_the_simulated_deployment_as_vidur_replays_them(
    predictor: OperatorPredictor, cached_run: SimulationResult
) -> None:
    target = VidurTarget(simulator(predictor, caching=True), generate_workload(SESSIONS), SESSIONS.shared_prefix_tokens)
    deadlines = DeadlineConfig(tbt_s=0.03, ttft_s=0.5)
    config = RunConfig(workload=SESSIONS, deadlines=deadlines, load=LoadConfig(spin_s=0.0, start_delay_s=0.0))
    outcome = measure_on_a_virtual_clock(config, target)
    measured = sorted(outcome.records, key=lambda r: r.id)
    simulated = sorted(cached_run.records(deadlines), key=lambda r: r.id)
    assert [r.id for r in measured] == [r.id for r in simulated]
    for real, sim in zip(measured, simulated, strict=True):
        assert real.arrival_s == pytest.approx(sim.arrival_s, abs=1e-9)
        assert real.token_times_s == pytest.approx(sim.token_times_s, abs=1e-9)
        assert (real.outcome, real.cached_prompt_tokens) == (sim.outcome, sim.cached_prompt_tokens)
    hit_rate = summarize(simulated)["cached_prompt_fraction"]
    assert outcome.metrics["cached_prompt_fraction"] == hit_rate


CONFIG = """
[scheduler]
enable_prefix_caching = true

[workload]
num_requests = 30
shared_prefix_tokens = 64
[workload.arrivals]
kind = "poisson"
rate = 2.0
[workload.lengths]
kind = "fixed"
prompt_tokens = 100
output_tokens = 20
[workload.sessions]
num_turns = 3
think_time_s = 1.0
"""


def test_the_command_reports_the_hit_rate(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sessions.toml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    code = main(["simulate", "--config", str(config), "--data-dir", str(data_dir), "--output-dir", str(run)])
    assert code == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "requests.jsonl").read_text().splitlines()]
    # First turns: 164 prompt tokens, 4 blocks of the system prompt cached once the first has run;
    # later turns (284 and 404 tokens) the turn before's 164 + 20 - 1 (or 284 + 20 - 1) computed.
    by_id = {line["id"]: line for line in lines}
    assert by_id[0]["cached_prompt_tokens"] == 0 and by_id[1]["cached_prompt_tokens"] == 176
    assert by_id[2]["cached_prompt_tokens"] == 288 and by_id[3]["cached_prompt_tokens"] in (0, 64)
    assert by_id[1]["arrival_s"] > by_id[1]["scheduled_arrival_s"]
    metrics = json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]
    expected = sum(line["cached_prompt_tokens"] for line in lines) / sum(line["prompt_tokens"] for line in lines)
    assert metrics["cached_prompt_fraction"] == pytest.approx(expected)
    report = (run / "report.md").read_text()
    assert f"| prefix cache hit rate (cached / prompt tokens) | {expected:.4g} |" in report
    assert "cached_prompt_fraction" in capsys.readouterr().out
