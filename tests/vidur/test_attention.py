"""Attention profiles in either format load (or fail with a ValueError that names the problem),
the kernel-cost fit recovers known coefficients, and on Vidur's measured kernels it predicts
held-out rows within 10%."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from vidur import OperatorPredictor, get_gpu
from vidur.attention_costs import (
    KERNEL_TERMS,
    FittedKernelCost,
    fit_kernel_cost,
    preferred_backend,
    work_matrix,
)
from vidur.cli import main
from vidur.profiles import AttentionSample, load_profiles, read_attention_profile
from vidur.validation import attention_error

VIDUR_HEADER = [
    "time_stats.attn_input_reshape.median",
    "time_stats.attn_kv_cache_save.median",
    "time_stats.attn_prefill.median",
    "time_stats.attn_decode.median",
    "time_stats.attn_output_reshape.median",
    "n_embd",
    "n_q_head",
    "n_kv_head",
    "block_size",
    "num_tensor_parallel_workers",
    "max_model_len",
    "batch_size",
    "prefill_chunk_size",
    "kv_cache_size",
    "is_prefill",
    "attention_backend",
]
# Llama-3-8B's shape (32 query heads, 8 KV heads, width 4096): a decode of 4 sequences at TP 2,
# a prefill chunk at TP 2 (its save and its zero decode time are not read), a decode at TP 16
# (more GPUs than KV heads: each keeps one), and an FA-style decode row without a save.
SHAPE = ["4096", "32", "8", "16"]
FLASHINFER, FLASH_ATTENTION = "AttentionBackend.FLASHINFER", "AttentionBackend.FLASH_ATTENTION"
VIDUR_ROWS = [
    ["0.0", "0.003", "0.0", "0.05", "0.002", *SHAPE, "2", "4096", "4", "0", "100", "False", FLASHINFER],
    ["0.0", "0.2", "0.3", "0.0", "0.0", *SHAPE, "2", "4096", "1", "512", "64", "True", FLASHINFER],
    ["0.0", "", "", "0.02", "0.001", *SHAPE, "16", "4096", "2", "0", "31", "False", FLASH_ATTENTION],
]


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows([header, *rows])
    return path


def test_a_vidur_format_table_loads_with_each_gpus_share_of_the_heads(tmp_path: Path) -> None:
    samples = read_attention_profile(write_table(tmp_path / "attention.csv", VIDUR_HEADER, VIDUR_ROWS))
    shapes = [(s.kernel, s.n_q_head, s.n_kv_head, s.head_dim, s.batch_size, s.num_tokens) for s in samples]
    assert shapes == [
        ("attn_decode", 16, 4, 128, 4, 1),
        ("attn_kv_cache_save", 16, 4, 128, 4, 1),
        ("attn_prefill", 16, 4, 128, 1, 512),
        ("attn_decode", 2, 1, 128, 2, 1),
    ]
    assert [s.num_context for s in samples] == [100, 100, 64, 31]
    # A kernel's time includes the reshapes around it; the backend loses its enum prefix.
    assert [s.time_s for s in samples] == pytest.approx([52e-6, 3e-6, 3e-4, 21e-6])
    assert [s.backend for s in samples] == ["FLASHINFER"] * 3 + ["FLASH_ATTENTION"]


def test_this_projects_format_still_loads(tmp_path: Path) -> None:
    header = ["n_q_head", "n_kv_head", "head_dim", "batch_size", "num_tokens", "kv_cache_size"]
    header += [f"time_stats.{kernel}.median" for kernel in ("attn_prefill", "attn_kv_cache_save", "attn_decode")]
    rows = [["8", "2", "64", "1", "128", "0", "0.5", "0.01", ""], ["8", "2", "64", "16", "1", "300", "", "", "0.2"]]
    samples = read_attention_profile(write_table(tmp_path / "attention.csv", header, rows))
    assert [(s.kernel, s.n_q_head, s.num_tokens, s.backend) for s in samples] == [
        ("attn_prefill", 8, 128, ""),
        ("attn_kv_cache_save", 8, 128, ""),
        ("attn_decode", 8, 1, ""),
    ]
    assert samples[2].time_s == pytest.approx(2e-4)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("kv_cache_size", None, "has no column 'kv_cache_size'"),
        ("time_stats.attn_decode.median", "fast", "line 2: time_stats.attn_decode.median is not a number, got 'fast'"),
        ("batch_size", "4.5", "line 2: batch_size is not an integer, got '4.5'"),
        ("batch_size", "0", "line 2: batch_size must be at least 1, got '0'"),
        ("is_prefill", "maybe", "line 2: is_prefill is not True or False, got 'maybe'"),
        ("num_tensor_parallel_workers", "3", "line 2: 32 query heads do not split over 3 GPUs"),
        ("n_embd", "4100", "line 2: n_embd 4100 is not a multiple of n_q_head 32"),
        ("n_embd", "", "line 2: n_embd is not an integer, got ''"),
    ],
)
def test_a_malformed_table_raises_a_value_error_naming_file_and_column(
    tmp_path: Path, column: str, value: str | None, message: str
) -> None:
    index = VIDUR_HEADER.index(column)
    header = [name for name in VIDUR_HEADER if value is not None or name != column]
    rows = [list(row) for row in VIDUR_ROWS]
    for row in rows:
        if value is None:
            del row[index]
        else:
            row[index] = value
    path = write_table(tmp_path / "attention.csv", header, rows)
    with pytest.raises(ValueError, match=f"profile {re.escape(str(path))}.*{re.escape(message)}"):
        read_attention_profile(path)


def test_a_short_row_and_a_bad_profile_on_the_command_line(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "compute" / "a100" / "org" / "model" / "attention.csv"
    write_table(path, VIDUR_HEADER, [VIDUR_ROWS[0][:-2]])
    with pytest.raises(ValueError, match=re.escape(f"profile {path} line 2 has 14 fields for 16 columns")):
        load_profiles([tmp_path])
    assert main(["predictor", "--data-dir", str(data_dir), "--profiling-dir", str(tmp_path)]) == 2
    assert f"vidur: error: profile {path} line 2 has 14 fields" in capsys.readouterr().err


def synthetic_decodes(truth: FittedKernelCost) -> tuple[list[AttentionSample], np.ndarray]:
    """Decodes of MHA and GQA shapes over batches and contexts, timed by `truth`."""
    samples = [
        AttentionSample("attn_decode", q_heads, kv_heads, 128, batch, 1, context, 0.0)
        for q_heads, kv_heads in ((32, 32), (32, 8), (8, 8), (16, 2))
        for batch in (1, 3, 16, 64, 200)
        for context in (31, 500, 2047, 8191)
    ]
    return samples, truth.times(work_matrix(samples))


def test_the_decode_fit_recovers_known_coefficients() -> None:
    truth = FittedKernelCost(8e-6, per_token_s=15e-9, per_item_s=25e-9, per_context_token_s=4e-9, per_byte_s=5e-13)
    samples, times = synthetic_decodes(truth)
    fitted = fit_kernel_cost(work_matrix(samples), times, KERNEL_TERMS["attn_decode"])
    assert fitted.coefficients == pytest.approx(truth.coefficients, rel=1e-6, abs=1e-20)
    # With 3% noise on every time, predictions stay within about the noise.
    noisy = times * np.random.default_rng(0).lognormal(0, 0.03, len(times))
    refitted = fit_kernel_cost(work_matrix(samples), noisy, KERNEL_TERMS["attn_decode"])
    assert np.mean(np.abs(refitted.times(work_matrix(samples)) / times - 1)) < 0.02
    assert refitted.per_byte_s == pytest.approx(truth.per_byte_s, rel=0.05)


def test_held_out_error_on_vidurs_attention_kernels_is_under_10_percent(predictor: OperatorPredictor) -> None:
    report = attention_error(predictor.profiles)
    assert report.backends == {"a100": "FLASH_ATTENTION", "a40": "FLASH_ATTENTION", "h100": "FLASH_ATTENTION"}
    assert report.num_points > 1000 and report.mape is not None and report.mape < 0.10
    for gpu, kernels in report.kernels.items():
        assert set(kernels) == {"attn_prefill", "attn_decode"}, gpu
        assert all(error.mape < 0.10 for error in kernels.values()), (gpu, kernels)


def test_flash_attention_writes_the_kv_cache_inside_its_kernels(predictor: OperatorPredictor) -> None:
    fit = predictor.attention["a100"]
    assert fit.backend == "FLASH_ATTENTION"
    assert fit.kernels["attn_kv_cache_save"] == FittedKernelCost()
    assert preferred_backend({"FLASHINFER", "FLASH_ATTENTION"}) == "FLASH_ATTENTION"
    assert preferred_backend({"FLASHINFER", "FLASH_ATTENTION", ""}) == ""
    assert preferred_backend({"XFORMERS", "FLASHINFER"}) == "FLASHINFER"


def test_a_gpu_without_attention_rows_borrows_its_references_scaled_to_its_peaks(
    predictor: OperatorPredictor,
) -> None:
    a40, l40s = get_gpu("a40"), get_gpu("l40s")
    own, borrowed = predictor.attention_costs(a40).prefill, predictor.attention_costs(l40s).prefill
    assert borrowed.per_causal_flop_s == pytest.approx(own.per_causal_flop_s * a40.peak_flops / l40s.peak_flops)
    decode_own, decode_borrowed = predictor.attention_costs(a40).decode, predictor.attention_costs(l40s).decode
    assert decode_borrowed.per_byte_s == pytest.approx(decode_own.per_byte_s * 696 / 864)
    assert (decode_borrowed.launch_s, decode_borrowed.per_item_s) == (decode_own.launch_s, decode_own.per_item_s)
    assert predictor.attention_costs(get_gpu("h200")).source == (
        "calibrated on h100 attention profiles (FLASH_ATTENTION), scaled to h200's peaks"
    )
