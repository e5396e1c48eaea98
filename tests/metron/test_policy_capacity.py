"""The pieces of benchmarks/policy_capacity.py (the Sarathi-Serve capacity benchmark, minutes
long, so not run here): the SLOs from the measured decode step, the token budget fitted to each,
the scaled traces and the engine command lines it launches."""

import argparse
import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "policy_capacity.py"
_SPEC = importlib.util.spec_from_file_location("policy_capacity", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_the_slos_are_5x_and_25x_the_decode_step() -> None:
    assert bench.tbt_slos(0.02) == pytest.approx({"strict": 0.1, "relaxed": 0.5})
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="decode step"):
            bench.tbt_slos(bad)
    slo = bench.slo_config(0.1)
    assert (slo.kind, slo.p99_tbt_s, slo.tbt_percentile, slo.p50_scheduling_delay_s) == ("tbt_ttft", 0.1, 99.0, 2.0)


def test_the_token_budget_is_the_longest_prefill_within_half_the_slo_and_at_least_max_num_seqs() -> None:
    prefill = {16: 0.03, 32: 0.04, 64: 0.06, 128: 0.09, 256: 0.2, 512: 0.45}
    assert bench.MAX_NUM_SEQS == 32
    assert bench.token_budget_for(0.2, prefill) == 128  # 0.09 <= 0.1 < 0.2
    assert bench.token_budget_for(1.0, prefill) == 512
    assert bench.token_budget_for(0.05, prefill) == 32  # only 16 fits; the engine needs >= max_num_seqs


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


def test_a_probe_offers_its_window_of_arrivals_and_at_least_three_requests() -> None:
    assert bench.probe_requests(2.0, 15.0) == 30
    assert bench.probe_requests(0.5, 15.0) == 8  # ceil(7.5)
    assert bench.probe_requests(0.05, 15.0) == 3
