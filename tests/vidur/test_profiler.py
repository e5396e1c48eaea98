"""`vidur profile` times the operators with PyTorch on this machine (here: the CPU, small) and
writes tables the predictor reads like the public ones, attention included."""

import json
from pathlib import Path

import numpy as np
import pytest

from vidur import get_gpu, get_model, train_predictor
from vidur.attention_costs import TERMS, work_matrix
from vidur.cli import main
from vidur.operator_work import layer_shape
from vidur.profiler import profile_folder
from vidur.profiles import MLP_OPERATORS, load_profiles, read_attention_profile, read_compute_profile

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 2048,
    "hidden_act": "silu",
}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("profiles")
    (root / "tiny").mkdir()
    (root / "tiny" / "config.json").write_text(json.dumps(TINY_LLAMA))
    # Labelled h100 so the predictor calibrates h100 attention with what was measured here.
    args = ["profile", "--model", str(root / "tiny"), "--tp", "1", "2", "--num-tokens", "1", "16", "64", "256"]
    args += ["--prefill-chunks", "32", "128", "512", "--prefill-contexts", "0", "512"]
    args += ["--decode-batch-sizes", "1", "8", "--decode-contexts", "64", "1024"]
    args += ["--repeats", "3", "--warmup", "1", "--device", "cpu", "--device-name", "h100", "--output-dir", str(root)]
    assert main(args) == 0
    return root


def test_profiles_are_written_in_vidurs_table_format(profiled: Path) -> None:
    folder = profiled / "compute" / "h100" / "local" / "tiny"
    profile = read_compute_profile(folder / "mlp.csv", "h100", "local/tiny")
    assert profile.shape == layer_shape(get_model(str(profiled / "tiny")))
    assert profile.tensor_parallel_degrees == [1, 2]
    for operator in MLP_OPERATORS:
        series = profile.series[(operator, 1)]
        assert series.x.tolist() == [1.0, 16.0, 64.0, 256.0]
        assert np.all(series.time_s > 0)
    samples = read_attention_profile(folder / "attention.csv")
    kernels = {s.kernel for s in samples}
    assert kernels == {"attn_prefill", "attn_decode", "attn_kv_cache_save"}
    assert {s.n_q_head for s in samples} == {8, 4}


def test_own_profiles_extend_the_public_ones_and_calibrate_attention(data_dir: Path, profiled: Path) -> None:
    """Own attention rows come before the public Vidur rows of the same GPU (h100 here)."""
    predictor = train_predictor([data_dir / "profiling", data_dir / "vidur-attention", profiled])
    tiny = get_model(str(profiled / "tiny"))
    curve = predictor.operator_curve(get_gpu("h100"), tiny, "mlp_up_proj", 2, 512)
    assert curve.source == "profile h100/local/tiny tp=2"
    costs = predictor.attention_costs(get_gpu("h100"))
    assert costs.source == "calibrated on h100 attention profiles"
    assert predictor.attention["h100"].backend == ""
    # Timings on a shared CPU are too noisy to judge the fit here (test_attention checks the
    # fitter on known costs); the calibrated kernel must still grow with its work.
    samples = [s for s in predictor.profiles.attention["h100"] if s.kernel == "attn_prefill" and not s.backend]
    work = work_matrix(samples)
    flops = work[:, TERMS.index("context_flop")] + work[:, TERMS.index("causal_flop")]
    small, large = costs.prefill.times(work[[flops.argmin(), flops.argmax()]])
    assert large > small


def test_a_later_roots_attention_table_replaces_an_earlier_one(profiled: Path, tmp_path: Path) -> None:
    """The same (GPU, model) table in two roots counts once, the later root's."""
    once = load_profiles([profiled]).attention["h100"]
    later = tmp_path / "compute" / "h100" / "local" / "tiny" / "attention.csv"
    later.parent.mkdir(parents=True)
    rows = (profiled / "compute" / "h100" / "local" / "tiny" / "attention.csv").read_text().splitlines()
    later.write_text("\n".join(rows[:3]) + "\n")
    assert load_profiles([profiled, profiled]).attention["h100"] == once
    replaced = load_profiles([profiled, tmp_path]).attention["h100"]
    assert replaced == read_attention_profile(later) and len(replaced) < len(once)


def test_cuda_device_names_map_to_their_own_gpus_folders() -> None:
    names = {
        "NVIDIA H100 80GB HBM3": "h100",
        "NVIDIA H100 PCIe": "h100_pcie",
        "NVIDIA H200": "h200",
        "NVIDIA A100-SXM4-80GB": "a100",
        "NVIDIA A100-SXM4-40GB": "a100_40gb",
        "NVIDIA A40": "a40",
        "NVIDIA L40S": "l40s",
        "NVIDIA L40": "l40",
        "NVIDIA L4": "l4",
        "NVIDIA A10G": "a10g",
        "NVIDIA GeForce RTX 4090": "nvidia_geforce_rtx_4090",
    }
    assert {name: profile_folder(name) for name in names} == names


@pytest.fixture(scope="module")
def cpu_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model profiled on this CPU under its own name: a device of its own."""
    root = tmp_path_factory.mktemp("cpu_profiles")
    (root / "tiny").mkdir()
    (root / "tiny" / "config.json").write_text(json.dumps(TINY_LLAMA))
    args = ["profile", "--model", str(root / "tiny"), "--num-tokens", "1", "8", "64", "256"]
    args += ["--prefill-chunks", "32", "256", "--prefill-contexts", "0", "512"]
    args += ["--decode-batch-sizes", "1", "8", "--decode-contexts", "64", "1024"]
    args += ["--repeats", "2", "--warmup", "1", "--device", "cpu", "--output-dir", str(root)]
    assert main(args) == 0
    return root


def test_a_profiled_device_is_a_device(cpu_profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = cpu_profile / "compute" / "cpu"
    spec = json.loads((device / "device.json").read_text())
    assert spec["name"] == "cpu" and spec["dtype"] == "float32" and spec["num_devices"] == 1
    assert spec["memory_bandwidth_gb_s"] > 0.1 and spec["matmul_tflops"] > 1e-4 and spec["memory_gib"] > 0.5
    gpu = get_gpu(str(device))
    assert (gpu.name, gpu.memory_gib, gpu.peak_bytes_per_s) == ("cpu", spec["memory_gib"], spec["memory_bandwidth_gb_s"] * 1e9)
    # The engine's own LM head was timed, so the predictor uses it instead of a roofline.
    profile = read_compute_profile(device / "local" / "tiny" / "mlp.csv", "cpu", "local/tiny")
    assert ("lm_head", 1) in profile.series and profile.vocab_size == 1000
    capsys.readouterr()
    args = ["simulate", "--gpu", str(device), "--model", str(cpu_profile / "tiny"), "--num-requests", "20"]
    args += ["--set", "workload.lengths.prompt_tokens=100", "--set", "workload.lengths.output_tokens=10"]
    args += ["--set", "workload.arrivals.rate=2", "--set", "deadlines.prefill=fixed"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "on 1 x 1 cpu (sarathi): 20 requests" in out


def test_a_lone_device_refuses_tensor_parallelism_and_a_bad_spec_is_named(
    cpu_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = cpu_profile / "compute" / "cpu"
    args = ["simulate", "--gpu", str(device), "--model", str(cpu_profile / "tiny"), "--tp", "2", "--num-requests", "5"]
    assert main(args) == 2
    assert "profiled alone" in capsys.readouterr().err
    broken = tmp_path / "compute" / "mystery"
    broken.mkdir(parents=True)
    (broken / "device.json").write_text('{"name": "mystery"}')
    assert main(["simulate", "--gpu", str(broken), "--num-requests", "5"]) == 2
    assert "missing 'memory_gib'" in capsys.readouterr().err
