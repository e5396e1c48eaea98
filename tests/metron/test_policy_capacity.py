"""The pieces of benchmarks/policy_capacity.py (the Sarathi-Serve capacity benchmark, minutes
long, so not run here): the SLOs from the measured decode step, the iteration-time fit from an
engine's iteration log and the token budget fitted to each SLO, the scaled traces, the engine
command lines it launches, probe sizes and the ratios with their ranges."""

import argparse
import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core.iteration_log import IterationRecord

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "policy_capacity.py"
_SPEC = importlib.util.spec_from_file_location("policy_capacity", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)  # puts benchmarks/ on sys.path for its iteration_time module
iteration_time = importlib.import_module("iteration_time")


def test_the_slos_are_5x_and_25x_the_decode_step() -> None:
    assert bench.tbt_slos(0.02) == pytest.approx({"strict": 0.1, "relaxed": 0.5})
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="decode step"):
            bench.tbt_slos(bad)
    slo = bench.slo_config(0.1)
    assert (slo.kind, slo.p99_tbt_s, slo.tbt_percentile, slo.p50_scheduling_delay_s) == ("tbt_ttft", 0.1, 99.0, 2.0)


def record(completed_at: float, scheduled_at: float, entries: list[tuple[int, int, bool]]) -> IterationRecord:
    """An iteration log line: (tokens, computed tokens before, is prefill) per request."""
    return IterationRecord(
        step_id=0, scheduled_at=scheduled_at, completed_at=completed_at, request_ids=list(range(len(entries))),
        num_tokens=[tokens for tokens, _, _ in entries], num_computed_tokens=[before for _, before, _ in entries],
        produces_token=[True] * len(entries), is_prefill=[prefill for _, _, prefill in entries], preempted_ids=[],
        queued=False, schedule_s=0.0, apply_s=0.0, delivery_s=0.0, idle_s=0.0, prepare_s=0.0, forward_s=0.0,
        execute_s=0.0,
    )  # fmt: skip


def test_an_iterations_period_runs_from_the_previous_end_or_its_scheduling_after_idle() -> None:
    records = [
        record(10.05, 10.0, [(100, 0, True)]),
        record(10.08, 10.04, [(1, 100, False)]),  # scheduled while the one before ran
        record(11.02, 11.0, [(1, 101, False)]),  # after the engine was idle
    ]
    assert iteration_time.iteration_periods(records) == pytest.approx([0.05, 0.03, 0.02])


def test_an_iterations_features_count_chunk_tokens_attention_pairs_and_decodes() -> None:
    hybrid = record(1.0, 0.9, [(64, 512, True), (16, 0, True), (1, 300, False), (1, 700, False)])
    # base; 64 + 16 prefill tokens; 64 * (512 + 32) + 16 * (0 + 8) pairs; 2 decodes over 1000 tokens
    assert iteration_time.iteration_features(hybrid) == [1.0, 80.0, 64 * 544 + 16 * 8, 2.0, 1000.0]


def test_the_fit_recovers_the_iteration_times_it_was_made_from() -> None:
    truth = np.array([0.005, 2e-4, 5e-7, 4e-3, 1e-6])
    rng = np.random.default_rng(0)
    records, end = [], 0.0
    for _ in range(40):
        entries = [(int(rng.integers(1, 256)), int(rng.integers(0, 1024)), True)] if rng.random() < 0.6 else []
        entries += [(1, int(rng.integers(1, 2048)), False) for _ in range(int(rng.integers(0, 5)))]
        end += float(np.dot(truth, iteration_time.iteration_features(record(0.0, 0.0, entries))))
        records.append(record(end, 0.0, entries))  # busy throughout: each scheduled before the last ended
    model = iteration_time.fit_iteration_time(records)
    assert model.coefficients == pytest.approx(truth.tolist(), rel=1e-6)
    assert model.num_iterations == 40 and model.median_error == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 10 logged iterations"):
        iteration_time.fit_iteration_time(records[:9])


def test_the_token_budget_is_the_longest_chunk_at_the_full_context_within_half_the_slo() -> None:
    model = iteration_time.IterationTimeModel(coefficients=[0.01, 1e-4, 1e-7, 0.0, 0.0], num_iterations=1, median_error=0.0)
    # 208 tokens after 816: 0.01 + 0.0208 + 1e-7 * 208 * (816 + 104) = 0.049936 <= 0.05;
    # 224 after 800: 0.01 + 0.0224 + 1e-7 * 224 * (800 + 112) = 0.0528288 > 0.05
    assert model.chunk_s(208, 1024 - 208) == pytest.approx(0.049936)
    assert bench.token_budget_for(0.1, model, 1024) == 208
    assert bench.token_budget_for(10.0, model, 1024) == 1024
    assert bench.MAX_NUM_SEQS == 32
    assert bench.token_budget_for(0.02, model, 1024) == 32  # nothing fits; the engine needs >= max_num_seqs


def test_a_trace_is_scaled_row_by_row_to_at_least_one_token(tmp_path: Path) -> None:
    source = tmp_path / "trace.csv"
    source.write_text("num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n4000,96,4096,41.6\n3,1,4,3\n")
    scaled = bench.scale_trace(source, 0.25, tmp_path / "scaled.csv")
    with scaled.open() as rows:
        assert [(row["num_prefill_tokens"], row["num_decode_tokens"]) for row in csv.DictReader(rows)] == [
            ("1000", "24"),
            ("1", "1"),
        ]


def test_both_policies_launch_with_the_same_flags_but_the_policy_and_sarathis_budget() -> None:
    args = argparse.Namespace(model=Path("/models/demo"), device="cpu", context=2048)
    vllm = bench.engine_argv("vllm", None, args, 8000, 8001)
    assert vllm == [
        sys.executable, "-m", "engine", "--model", "/models/demo", "--device", "cpu", "--port", "8000",
        "--rpc-port", "8001", "--policy", "vllm", "--no-access-log", "--max-num-seqs", "32",
        "--num-kv-blocks", "4096", "--max-model-len", "2048",
    ]  # fmt: skip
    sarathi = bench.engine_argv("sarathi", 128, args, 8000, 8001)
    assert sarathi == [*("sarathi" if word == "vllm" else word for word in vllm), "--token-budget", "128"]
    logged = bench.engine_argv("sarathi", 128, args, 8000, 8001, Path("/runs/iterations.jsonl"))
    assert logged == [*sarathi, "--iteration-log", "/runs/iterations.jsonl"]


def test_a_probe_offers_its_window_of_arrivals_and_at_least_the_minimum_of_requests() -> None:
    assert bench.probe_requests(2.0, 15.0, 12) == 30
    assert bench.probe_requests(0.9, 15.0, 12) == 14  # ceil(13.5)
    assert bench.probe_requests(0.05, 15.0, 12) == 12


def test_the_ratio_comes_with_the_range_both_brackets_allow() -> None:
    by_policy = {
        "sarathi": {"qps": 1.0, "failed_qps": 1.2, "converged": True},
        "vllm": {"qps": 0.4, "failed_qps": 0.5, "converged": True},
    }
    assert bench.ratios(by_policy) == pytest.approx({"ratio": 2.5, "at_least": 2.0, "at_most": 3.0})
    by_policy["sarathi"]["failed_qps"] = None  # never failed: no upper bound
    by_policy["vllm"]["qps"] = 0.0  # even the lowest rate failed
    assert bench.ratios(by_policy) == {"ratio": None, "at_least": 2.0, "at_most": None}


@pytest.mark.parametrize("flag", ["--max-probes", "--min-probe-requests"])
def test_a_probe_count_below_one_is_refused_before_anything_starts(flag: str) -> None:
    ran = subprocess.run([sys.executable, str(_PATH), flag, "0"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2 and f"{flag} must be at least 1, got 0" in ran.stderr
