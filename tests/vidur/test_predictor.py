"""The predictor interpolates profiled points, extrapolates the way hardware behaves, transfers
to unprofiled shapes and GPUs through fitted rooflines, and reports its held-out error."""

import csv
from pathlib import Path

import numpy as np
import pytest

from vidur import DeploymentConfig, ModelSpec, OperatorPredictor, ReplicaConfig, get_gpu, get_model, plan_deployment
from vidur.attention_costs import FittedKernelCost, attention_work
from vidur.curves import CurveData, FittedRoofline, fit_profile_curve, fit_roofline, non_decreasing
from vidur.operator_work import MEMORY_BOUND_OPERATORS, layer_shape
from vidur.profiles import AttentionSample, load_profiles
from vidur.validation import interpolation_error, roofline_transfer_error

LLAMA_7B_TABLE = Path("compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv")


def test_non_decreasing_is_the_least_squares_monotone_fit() -> None:
    assert non_decreasing(np.array([1.0, 3.0, 2.0, 4.0])).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert non_decreasing(np.array([5.0, 1.0, 1.0])).tolist() == pytest.approx([7 / 3] * 3)


def test_curve_semantics_match_the_rust_curve() -> None:
    curve = CurveData((1.0, 10.0, 20.0), (2.0, 5.0, 6.0), 0.5)
    rust = curve.to_rust()
    for x in (0.0, 1.0, 4.0, 10.0, 15.0, 20.0, 40.0):
        assert float(curve(x)) == pytest.approx(rust(x), rel=1e-15)
    assert curve.scaled_x(2.0)(20.0) == pytest.approx(curve(40.0))


def test_profiled_operators_interpolate_and_extrapolate_linearly(predictor: OperatorPredictor) -> None:
    gpu, model = get_gpu("h100"), get_model("llama-2-7b")
    series = predictor.profiles.compute[("h100", "meta-llama/Llama-2-7b-hf")].series[("mlp_up_proj", 1)]
    predicted = predictor.operator_curve(gpu, model, "mlp_up_proj", 1, 4096)
    assert predicted.source == "profile h100/meta-llama/Llama-2-7b-hf tp=1"
    assert np.mean(np.abs(predicted.curve(series.x) / series.time_s - 1)) < 0.02
    # Past the largest profiled count (4096) time keeps growing linearly, it does not go flat.
    at_4k, at_8k, at_16k = (float(predicted.curve(n)) for n in (4096, 8192, 16384))
    assert at_8k == pytest.approx(2 * at_4k, rel=0.15)
    assert at_16k - at_8k == pytest.approx(2 * (at_8k - at_4k), rel=1e-9)


def test_models_of_one_layer_shape_each_use_their_own_table(predictor: OperatorPredictor) -> None:
    # Llama-2-70B and Llama-3-70B share a layer shape; both are profiled on the A100.
    gpu = get_gpu("a100")
    for name, folder in (("llama-2-70b", "meta-llama/Llama-2-70b-hf"), ("llama-3-70b", "meta-llama/Meta-Llama-3-70B")):
        model = get_model(name)
        assert predictor.operator_curve(gpu, model, "mlp_up_proj", 4, 4096).source == f"profile a100/{folder} tp=4"
        table = predictor.profiles.compute[("a100", folder)].series[("mlp_up_proj", 4)]
        predicted = predictor.operator_curve(gpu, model, "mlp_up_proj", 4, 4096).curve(table.x)
        assert np.mean(np.abs(predicted / table.time_s - 1)) < 0.02
    # A model of that shape with no folder of its own uses one of them.
    unprofiled = ModelSpec("my-70b", 80, 8192, 64, 8, 28672, 32000, 4096)
    assert predictor.operator_curve(gpu, unprofiled, "mlp_up_proj", 4, 4096).source.startswith("profile a100/meta-llama/")


def test_a_later_roots_table_replaces_every_earlier_table_of_its_shape(data_dir: Path, tmp_path: Path) -> None:
    public = data_dir / "profiling"
    own = tmp_path / "compute" / "a100" / "my-org" / "my-70b"
    own.mkdir(parents=True)
    (own / "mlp.csv").write_text((public / "compute/a100/meta-llama/Llama-2-70b-hf/mlp.csv").read_text())
    profiles = load_profiles([public, tmp_path])
    folders = {folder for gpu, folder in profiles.compute if gpu == "a100"}
    assert "my-org/my-70b" in folders
    assert not folders & {"meta-llama/Llama-2-70b-hf", "meta-llama/Meta-Llama-3-70B"}
    assert "meta-llama/Llama-2-7b-hf" in folders


def test_unprofiled_shapes_and_gpus_use_rooflines_that_follow_the_hardware(predictor: OperatorPredictor) -> None:
    mistral = get_model("mistral-7b")
    on_h100 = predictor.operator_curve(get_gpu("h100"), mistral, "mlp_down_proj", 1, 4096)
    on_h200 = predictor.operator_curve(get_gpu("h200"), mistral, "mlp_down_proj", 1, 4096)
    assert on_h100.source == "roofline fitted on h100 profiles"
    assert on_h200.source == "roofline fitted on h100 profiles, scaled to h200's peaks"
    # Decode-sized GEMMs are memory-bound: the H200's 4.8 TB/s beats the H100's 3.35 TB/s by
    # that ratio; large ones are compute-bound and the two chips (same FLOP/s) tie.
    assert float(on_h100.curve(8)) / float(on_h200.curve(8)) == pytest.approx(4.8 / 3.35, rel=0.1)
    assert float(on_h100.curve(4096)) == pytest.approx(float(on_h200.curve(4096)), rel=0.02)
    # Mistral's MLP (14336) is Llama-3-8B's shape: the a100 table of Llama-3-8B serves it directly.
    assert predictor.operator_curve(get_gpu("a100"), mistral, "mlp_down_proj", 1, 4096).source.startswith(
        "profile a100/meta-llama/Meta-Llama-3-8B"
    )


def test_attention_prefill_grows_quadratically_and_decode_with_the_kv_read(llama7b_h100: object) -> None:
    cost = llama7b_h100.cost_model  # type: ignore[attr-defined]
    attention = cost.attention
    assert attention.prefill_work(2048, 0).flops / attention.prefill_work(1024, 0).flops == pytest.approx(4.0, rel=0.01)
    assert attention.decode_work(1, 2000, 2000).bytes / attention.decode_work(1, 1000, 1000).bytes == pytest.approx(
        2.0, rel=0.01
    )
    # 16x the FLOPs for 4x the chunk: more than linear, less than quadratic (per-token costs).
    kernel = attention.prefill
    short, long = (kernel.time(attention.prefill_work(n, 0)) for n in (1024, 4096))
    assert 4 * short < long < 16 * short
    # A chunk after a long context attends to it: a prompt's later chunks cost more, by the
    # FLOPs against the context.
    first, later = attention.prefill_work(512, 0), attention.prefill_work(512, 3584)
    assert kernel.time(later) - kernel.time(first) == pytest.approx(
        later.context_flops * kernel.per_context_flop_s, rel=1e-9
    )
    assert kernel.time(later) > 1.5 * kernel.time(first)


def test_held_out_error_is_small(predictor: OperatorPredictor) -> None:
    interpolation = interpolation_error(predictor.profiles)
    assert interpolation.num_layer_points > 1000
    assert interpolation.layer_mape < 0.05
    assert max(interpolation.operator_mape.values()) < 0.06
    transfer = roofline_transfer_error(predictor.profiles)
    assert set(transfer) == {"a100", "a40", "h100"}
    assert all(report.layer_mape < 0.12 for report in transfer.values())


def test_collectives_come_from_network_profiles_or_a_ring_model(predictor: OperatorPredictor) -> None:
    profiled = predictor.collective_curve(get_gpu("h100"), "all_reduce", 4, 8192, 512)
    assert profiled.source.startswith("profile h100_dgx/all_reduce workers=4")
    modelled = predictor.collective_curve(get_gpu("a40"), "all_reduce", 2, 8192, 512)
    assert modelled.source.startswith("ring model")
    assert float(modelled.curve(512)) > float(modelled.curve(1))


def test_fit_profile_curve_reproduces_clean_linear_data() -> None:
    x = np.array([1.0, 64, 128, 256, 512])
    y = 1e-5 + 2e-7 * x
    curve = fit_profile_curve(x, y)
    assert float(curve(1024)) == pytest.approx(1e-5 + 2e-7 * 1024, rel=1e-9)


def test_roofline_fit_recovers_known_rates_from_noisy_times() -> None:
    truth = FittedRoofline(overhead_s=8e-6, flops_per_s=4e14, bytes_per_s=1.5e12)
    rng = np.random.default_rng(0)
    tokens = np.geomspace(1, 8192, 60)
    flops = 2 * tokens * 4096 * 11008
    bytes_moved = 2 * (4096 * 11008 + tokens * (4096 + 11008))
    times = truth.time(flops, bytes_moved) * rng.lognormal(0, 0.05, len(tokens))
    fitted = fit_roofline(flops, bytes_moved, times)
    assert fitted.flops_per_s == pytest.approx(truth.flops_per_s, rel=0.1)
    assert fitted.bytes_per_s == pytest.approx(truth.bytes_per_s, rel=0.1)
    assert truth.overhead_s / 2 < fitted.overhead_s < truth.overhead_s * 2


def scaled_table(source: Path, target: Path, factor: float) -> None:
    """A copy of a profile table with every time multiplied by `factor`."""
    with source.open(newline="") as file:
        rows = list(csv.reader(file))
    timed = [i for i, name in enumerate(rows[0]) if name.startswith("time_stats.")]
    for row in rows[1:]:
        for i in timed:
            row[i] = str(float(row[i]) * factor) if row[i] else row[i]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows(rows)


PREFILL_TRUTH = FittedKernelCost(
    12e-6, per_token_s=20e-9, per_item_s=2e-9, per_context_flop_s=3e-15, per_causal_flop_s=6e-15
)
DECODE_TRUTH = FittedKernelCost(9e-6, per_token_s=30e-9, per_item_s=20e-9, per_context_token_s=3e-9, per_byte_s=3e-13)
SAVE_TRUTH = FittedKernelCost(3e-6, per_byte_s=4e-13)


def _ms(truth: FittedKernelCost, sample: AttentionSample) -> float:
    return truth.to_rust().time(attention_work(sample)) * 1e3


def synthetic_attention_table(path: Path) -> None:
    """Attention kernels of Llama-2-7B's shape at TP 1 and 2, in this project's format, timed by
    known costs."""
    header = ["n_q_head", "n_kv_head", "head_dim", "batch_size", "num_tokens", "kv_cache_size"]
    header += [f"time_stats.{kernel}.median" for kernel in ("attn_prefill", "attn_decode", "attn_kv_cache_save")]
    rows = []
    for heads in (32, 16):
        for chunk in (64, 256, 1024, 2048):
            for context in (0, 1024, 4096):
                prefill = AttentionSample("attn_prefill", heads, heads, 128, 1, chunk, context, 0.0)
                save = AttentionSample("attn_kv_cache_save", heads, heads, 128, 1, chunk, context, 0.0)
                times = [_ms(PREFILL_TRUTH, prefill), "", _ms(SAVE_TRUTH, save)]
                rows.append([heads, heads, 128, 1, chunk, context, *times])
        for batch in (1, 8, 32, 128):
            for context in (128, 1024, 4096):
                decode = AttentionSample("attn_decode", heads, heads, 128, batch, 1, context, 0.0)
                rows.append([heads, heads, 128, batch, 1, context, "", _ms(DECODE_TRUTH, decode), ""])
    with path.open("w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows([header, *rows])


def test_a_gpus_own_profiles_come_before_its_reference_gpus(
    predictor: OperatorPredictor, data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "compute" / "h200" / "meta-llama" / "Llama-2-7b-hf"
    scaled_table(data_dir / "profiling" / LLAMA_7B_TABLE, folder / "mlp.csv", 10.0)
    synthetic_attention_table(folder / "attention.csv")
    h100, h200, llama = get_gpu("h100"), get_gpu("h200"), get_model("llama-2-7b")

    both = OperatorPredictor.train([data_dir / "profiling", data_dir / "vidur-attention", tmp_path])
    own = both.operator_curve(h200, llama, "mlp_up_proj", 1, 4096)
    assert own.source == "profile h200/meta-llama/Llama-2-7b-hf tp=1"
    on_h100 = predictor.operator_curve(h100, llama, "mlp_up_proj", 1, 4096)
    for tokens in (1, 100, 4096, 10_000):
        assert float(own.curve(tokens)) == pytest.approx(10 * float(on_h100.curve(tokens)), rel=1e-9)
    unprofiled_shape = both.operator_curve(h200, get_model("mistral-7b"), "mlp_down_proj", 1, 4096)
    assert unprofiled_shape.source == "roofline fitted on h200 profiles"
    attention = both.attention_costs(h200)
    assert attention.source == "calibrated on h200 attention profiles"
    decode = AttentionSample("attn_decode", 32, 32, 128, 16, 1, 2000, 0.0)
    assert _ms(attention.decode, decode) == pytest.approx(_ms(DECODE_TRUTH, decode), rel=1e-6)

    # With only its own profiles configured, an H200 deployment is calibrated on H200 alone.
    alone = OperatorPredictor.train([tmp_path])
    sources = plan_deployment(DeploymentConfig(replica=ReplicaConfig(gpu="h200")), alone).cost_model.sources()
    assert all("h200" in source and "h100" not in source for source in sources.values()), sources


@pytest.mark.parametrize("operator", sorted(MEMORY_BOUND_OPERATORS))
def test_an_unprofiled_gpu_scales_memory_bound_operators_by_bandwidth(
    predictor: OperatorPredictor, operator: str
) -> None:
    """Elementwise FLOPs grow with their bytes, so the fit cannot tell compute from memory: the
    roofline models them by bytes, and an L40S (864 GB/s, 362 TFLOP/s) runs them 864/696 times
    as fast as the A40 (696 GB/s, 150 TFLOP/s) it borrows its efficiencies from."""
    model = ModelSpec("unprofiled", 2, 3072, 24, 8, 8192, 32000, 4096)
    a40, l40s = (predictor.operator_curve(get_gpu(name), model, operator, 1, 8192) for name in ("a40", "l40s"))
    assert a40.source == "roofline fitted on a40 profiles"
    assert l40s.source == "roofline fitted on a40 profiles, scaled to l40s's peaks"
    slope_a40, slope_l40s = (float(c(8192) - c(4096)) for c in (a40.curve, l40s.curve))
    assert slope_a40 / slope_l40s == pytest.approx(864 / 696, rel=1e-9)
    fitted = predictor.rooflines["h100"][operator]
    assert fitted.flops_per_s == float("inf") and 0.3e12 < fitted.bytes_per_s < 4e12
