"""Capacity search (the algorithm, and the command against a server that slows down with load,
reusing its cached runs) and prefill profiling (the fit, and the command against a server whose
TTFT grows with the prompt)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metron.capacity import CapacityConfig, CapacityStep, search_capacity
from metron.prefill_model import PrefillModel, fit_prefill_model
from metron.prefill_profile import read_prefill_model


def metron(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metron.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_expanding_binary_search_finds_the_threshold() -> None:
    asked: list[float] = []

    def evaluate(qps: float) -> CapacityStep:
        asked.append(qps)
        return CapacityStep(qps=qps, passed=qps <= 7.3, verdict="")

    result = search_capacity(evaluate, CapacityConfig(initial_qps=1.0, granularity=0.02))
    assert result.converged
    assert 7.3 * 0.98 <= result.capacity_qps <= 7.3
    # The initial rate first, doubled while it passes: 1, 2 and 4 pass, 8 fails, and bisection
    # between 4 and 8 takes over.
    assert asked[:6] == [1.0, 2.0, 4.0, 8.0, 6.0, 7.0]
    assert all(step.passed == (step.qps <= 7.3) for step in result.steps)


def test_capacity_is_zero_when_nothing_passes_and_runs_are_bounded() -> None:
    failing = search_capacity(lambda q: CapacityStep(qps=q, passed=False, verdict=""), CapacityConfig(min_qps=0.1))
    assert failing.capacity_qps == 0.0 and failing.converged and failing.steps[-1].qps < 0.2
    capped = search_capacity(lambda q: CapacityStep(qps=q, passed=True, verdict=""), CapacityConfig(max_runs=3))
    assert not capped.converged and len(capped.steps) == 3


def test_capacity_command_against_a_server_that_slows_with_load(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Every gap is 10 ms + 20 ms per open stream: alone a request meets a 50 ms TBT deadline, and
    # nearly regular arrivals (gamma, cv 0.25) start to overlap above ~6 QPS.
    server = scripted_server({"model": "m", "first_s": 0.02, "gap_s": 0.01, "gap_per_stream_s": 0.02})
    args = ["--url", server.url, "--model", "m", "--num-requests", "16", "--output-tokens", "6", "--prompt-tokens", "8"]
    args += [
        "--tbt-deadline",
        "0.05",
        "--ttft-deadline",
        "0.05",
        "--initial-qps",
        "8",
        "--granularity",
        "0.25",
        "--max-runs",
        "6",
    ]
    args += ["--arrivals", "gamma", "--cv", "0.25", "--min-qps", "1"]
    out = tmp_path / "capacity"
    first = metron("capacity", *args, "--output-dir", str(out))
    assert first.returncode == 0, first.stderr
    result = json.loads((out / "capacity.json").read_text())["result"]
    steps = result["steps"]
    assert any(s["passed"] for s in steps) and any(not s["passed"] for s in steps)
    assert 0 < result["capacity_qps"] < 32
    assert (out / "capacity.png").is_file() and (out / "report.md").is_file()
    assert all((Path(s["directory"]) / "requests.jsonl").is_file() for s in steps)
    assert steps[0]["qps"] == 8.0  # --initial-qps itself first
    report = (out / "report.md").read_text()
    assert "under SLO P99 miss rate <= 0.1, error rate <= 0.01." in report and "SloConfig" not in report

    # Again with the same workload: every run comes from the cache, the answer is the same.
    again = metron("capacity", *args, "--output-dir", str(out))
    assert again.returncode == 0 and again.stdout.count("(cached)") == len(steps)
    assert json.loads((out / "capacity.json").read_text())["result"]["capacity_qps"] == result["capacity_qps"]


def test_capacity_shows_a_bar_of_probes_and_one_of_each_probes_requests(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server({"model": "m", "first_s": 0.01, "gap_s": 0.005})
    args = ["--url", server.url, "--model", "m", "--num-requests", "3", "--output-tokens", "2", "--prompt-tokens", "4"]
    args += ["--initial-qps", "20", "--max-runs", "2", "--output-dir", str(tmp_path / "out")]
    searched = metron("capacity", *args)
    assert searched.returncode == 0, searched.stderr
    assert searched.stdout.count(" QPS: PASS") == 2  # the verdicts stay on stdout
    assert "2/2 [" in searched.stderr and "probe/s]" in searched.stderr  # both probes, counted
    assert "0/3 [" in searched.stderr and "req/s]" in searched.stderr  # a probe's requests
    quiet = metron("capacity", *args, "--no-progress")  # the same search again, from its cached runs
    assert quiet.returncode == 0 and quiet.stdout.count("(cached)") == 2
    assert "probe" not in quiet.stderr and "req/s" not in quiet.stderr


def test_prefill_fit_recovers_a_quadratic_and_extrapolates_upward() -> None:
    truth = PrefillModel(intercept_s=0.02, per_token_s=5e-5, per_token_squared_s=1e-8)
    lengths = np.repeat([128, 256, 512, 1024, 2048], 3)
    noise = np.random.default_rng(0).normal(0, 0.0005, len(lengths))
    model = fit_prefill_model(lengths, [truth.predict_s(n) + e for n, e in zip(lengths, noise, strict=True)])
    assert model.predict_s(1024) == pytest.approx(truth.predict_s(1024), rel=0.02)
    assert model.predict_s(8192) == pytest.approx(truth.predict_s(8192), rel=0.1)
    # Data that would pull a free fit negative (falling TTFT) still gives a non-decreasing model.
    flat = fit_prefill_model([100, 200, 300], [0.05, 0.04, 0.03])
    assert min(flat.intercept_s, flat.per_token_s, flat.per_token_squared_s) >= 0
    assert flat.predict_s(10_000) >= flat.predict_s(100)
    with pytest.raises(ValueError, match="two or more prompt lengths"):
        fit_prefill_model([5, 5], [0.1, 0.1])


def test_profile_prefill_command(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The server adds 0.1 ms per prompt word to the first token's 10 ms.
    server = scripted_server({"model": "m", "first_s": 0.01, "gap_s": 0.01, "prefill_s_per_word": 1e-4})
    output = tmp_path / "prefill.json"
    result = metron(
        "profile-prefill", "--url", server.url, "--model", "m", "--prompt-lengths", "100,400,1000,2000",
        "--samples", "3", "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    model = read_prefill_model(output)
    assert model.predict_s(1500) == pytest.approx(0.01 + 1500e-4, abs=0.01)
    assert model.predict_s(6000) == pytest.approx(0.01 + 6000e-4, rel=0.2)
    profile = json.loads(output.read_text())
    assert sorted(profile["prompt_tokens"]) == [100] * 3 + [400] * 3 + [1000] * 3 + [2000] * 3

    # A run scored with the profile: each request's TTFT deadline is its predicted prefill + slack.
    run = tmp_path / "run"
    scored = metron(
        "run", "--url", server.url, "--model", "m", "--num-requests", "5", "--rate", "10", "--prompt-tokens", "300",
        "--output-tokens", "3", "--prefill-profile", str(output), "--ttft-slack", "0.2", "--output-dir", str(run),
        "--no-progress",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    first = json.loads((run / "requests.jsonl").read_text().splitlines()[0])
    assert first["ttft_deadline_s"] == pytest.approx(model.predict_s(300) + 0.2)
    assert metron("run", "--url", server.url, "--model", "m", "--prefill-profile", str(tmp_path / "x.json"),
                  "--output-dir", str(tmp_path / "bad")).returncode == 2  # fmt: skip
