"""The runner's life cycle: model info, KV capacity, the profiling step, shutdown."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.worker.attention import AttentionMetadata
from engine.worker.attention.sdpa import SdpaPlan
from engine.worker.model.loader import auto_dtype_name
from engine.worker.model_runner import (
    ModelRunner,
    ModelRunnerConfig,
    cuda_device_index,
    kv_cache_num_blocks,
    largest_step,
)


def test_model_info_and_cpu_kv_capacity(tiny_llama: Path) -> None:
    runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), kv_cache_memory_gib=0.01, max_model_len=256))
    info = runner.model_info
    assert (info.vocab_size, info.eos_token_ids, info.bos_token_id, info.max_model_len) == (512, (1,), 0, 256)
    assert (info.num_layers, info.num_heads, info.num_kv_heads, info.head_dim) == (2, 4, 2, 16)
    assert (info.dtype, info.device, info.attention_backend, info.tensor_parallel_size) == ("float32", "cpu", "sdpa", 1)
    # 2 layers x (K and V) x 16 tokens x 2 KV heads x 16 dims x 4 bytes
    assert info.kv_cache_bytes_per_block == 2 * 2 * 16 * 2 * 16 * 4
    assert runner.determine_num_kv_blocks() == int(0.01 * 2**30) // info.kv_cache_bytes_per_block
    assert info.to_dict()["eos_token_ids"] == (1,)
    explicit = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), num_kv_blocks=7))
    assert explicit.determine_num_kv_blocks() == 7


def test_kv_cache_lifecycle(tiny_llama: Path) -> None:
    runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama)))
    with pytest.raises(ValueError, match="num_blocks must be at least 1, got 0"):
        runner.init_kv_cache(0)
    runner.init_kv_cache(3)
    assert [tuple(layer.shape) for layer in runner.kv_caches] == [(2, 3, 16, 2, 16)] * 2
    with pytest.raises(ValueError, match="the KV cache is already initialised"):
        runner.init_kv_cache(3)
    runner.shutdown()
    assert runner.kv_caches == []


def test_largest_step_runs_and_reaches_max_context(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU profiling step is a valid step: the whole token budget, chunks as long as allowed,
    then decodes, every one at the end of a max_model_len context, all on the same blocks."""
    step, num_blocks = largest_step(token_budget=100, max_num_seqs=5, max_model_len=40, block_size=4)
    columns = step.columns()
    assert columns.num_tokens.tolist() == [39, 39, 20, 1, 1]
    assert columns.num_computed_tokens.tolist() == [1, 1, 20, 39, 39]
    assert num_blocks == 10 and columns.new_block_ids.tolist() == list(range(10)) * 5
    runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), block_size=4, max_model_len=40))
    runner.init_kv_cache(num_blocks)
    plans: list[SdpaPlan] = []
    prepare = runner.backend.prepare

    def keep_plan(metadata: AttentionMetadata) -> SdpaPlan:
        plans.append(prepare(metadata))
        return plans[-1]

    monkeypatch.setattr(runner.backend, "prepare", keep_plan)
    assert len(runner.execute(step).sampled_token_ids) == 5 * 4  # five little-endian u32 tokens
    (plan,) = plans
    assert plan.metadata.seq_lens == (40,) * 5
    assert tuple(plan.decode_block_tables.shape) == (2, 10)  # decodes gather the whole max context
    assert [(p.query_len, p.seq_len) for p in plan.prefills] == [(39, 40), (39, 40), (20, 40)]
    assert all(p.mask(sliding_window=None, group=1) is not None for p in plan.prefills)  # the masked path
    # A budget below max_num_seqs: one-token chunks only; a one-token model: decodes of one token.
    assert largest_step(3, 8, 40, 4)[0].columns().num_tokens.tolist() == [1, 1, 1]
    step, num_blocks = largest_step(10, 2, 1, 16)
    columns = step.columns()
    assert columns.num_tokens.tolist() == [1, 1] and columns.num_computed_tokens.tolist() == [0, 0]
    assert num_blocks == 1


def test_kv_cache_takes_what_profiling_leaves() -> None:
    gib = 2**30
    figures: dict[str, Any] = dict(
        total=80 * gib, activation_peak=4 * gib, gpu_memory_utilization=0.9, bytes_per_block=gib // 8
    )
    # 16 GiB of weights before the step, as many after: 72 - 16 - 4 = 52 GiB.
    assert kv_cache_num_blocks(free_before=64 * gib, free_after=64 * gib, **figures) == 52 * 8
    # 1 GiB allocated outside PyTorch's allocator during the step (a cuBLAS workspace) stays in use.
    assert kv_cache_num_blocks(free_before=64 * gib, free_after=63 * gib, **figures) == 51 * 8
    # Memory freed by someone else meanwhile gives the cache no more than before the step.
    assert kv_cache_num_blocks(free_before=64 * gib, free_after=66 * gib, **figures) == 52 * 8
    with pytest.raises(ValueError, match="no room for the KV cache: 70.00 GiB in use besides activations"):
        kv_cache_num_blocks(free_before=10 * gib, free_after=10 * gib, **figures)


def test_each_rank_needs_its_own_gpu() -> None:
    assert cuda_device_index(rank=0, tensor_parallel_size=1, num_visible=1) == 0
    assert cuda_device_index(rank=0, tensor_parallel_size=1, num_visible=4) == 0
    assert [cuda_device_index(rank, 2, 2) for rank in range(2)] == [0, 1]
    assert cuda_device_index(rank=3, tensor_parallel_size=4, num_visible=8) == 3
    # With one visible GPU, both ranks of a TP-2 group would take cuda:0 and NCCL would fail later.
    for rank in range(2):
        with pytest.raises(ValueError, match=r"tensor_parallel_size 2 needs 2 GPUs.*device_count\(\) is 1"):
            cuda_device_index(rank, tensor_parallel_size=2, num_visible=1)


def test_auto_dtype() -> None:
    assert auto_dtype_name("bfloat16", capability=None) == "float32"  # the CPU
    assert auto_dtype_name("bfloat16", capability=(8, 0)) == "bfloat16"
    assert auto_dtype_name(None, capability=(9, 0)) == "bfloat16"
    assert auto_dtype_name("float16", capability=(9, 0)) == "float16"
    assert auto_dtype_name("float32", capability=(7, 5)) == "float32"
    # GPUs before Ampere (T4, V100) have no bfloat16: float16 instead.
    assert auto_dtype_name("bfloat16", capability=(7, 5)) == "float16"
    assert auto_dtype_name(None, capability=(7, 0)) == "float16"


def test_config_and_info_import_without_torch() -> None:
    """The engine process builds configs and reads ModelInfo without loading PyTorch."""
    code = (
        "import sys, pickle; from engine.wire.runner_config import ModelRunnerConfig, ModelInfo; "
        "config = ModelRunnerConfig(model='m', tensor_parallel_size=2); "
        "assert pickle.loads(pickle.dumps(config)) == config; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
