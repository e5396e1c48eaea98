"""The engine's `triton` attention backend: a mixed batch against the `reference` backend, the
tiny model (its fused Triton layers included) through `ModelRunner` greedy-identical to the
reference backend, and its selection."""

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.worker.attention import (
    AttentionLayer,
    AttentionMetadata,
    ReferenceAttention,
    auto_backend_name,
    kv_cache_shape,
    select_backend,
)
from engine.worker.attention.flash import is_flash_attn_available
from engine.worker.attention.triton_attention import triton_unsupported_reason
from engine.worker.model.layers import fused
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine_model.harness import generate, random_prompts
from paged_cases import DEVICE


@pytest.mark.parametrize(
    ("layer", "block_size"),
    [
        (AttentionLayer(num_heads=8, num_kv_heads=2, head_dim=32, scale=32**-0.5), 16),
        (AttentionLayer(num_heads=4, num_kv_heads=1, head_dim=64, scale=0.125, sliding_window=20), 24),
    ],
    ids=["gqa-block16", "mqa-window-block24"],
)
def test_mixed_batch_matches_reference_backend(layer: AttentionLayer, block_size: int) -> None:
    """Decodes, a fresh prompt and chunks after cached prefixes in one step, tables reserved past
    the contexts; any block size works, a power of two or not."""
    query_lens, seq_lens = [1, 30, 1, 7, 1], [40, 30, 1, 50, 24]
    rng = random.Random(0)
    num_blocks = sum(-(-n // block_size) + 2 for n in seq_lens) + 3
    free = list(range(num_blocks))
    rng.shuffle(free)
    tables = [[free.pop() for _ in range(-(-n // block_size) + 2)] for n in seq_lens]
    generator = torch.Generator().manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(DEVICE)

    num_tokens = sum(query_lens)
    query = randn(num_tokens, layer.num_heads, layer.head_dim)
    key, value = (randn(num_tokens, layer.num_kv_heads, layer.head_dim) for _ in range(2))
    cache = randn(*kv_cache_shape(num_blocks, block_size, layer.num_kv_heads, layer.head_dim))
    metadata = AttentionMetadata.build(
        query_lens=query_lens, seq_lens=seq_lens, block_tables=tables, block_size=block_size, device=DEVICE
    )
    outputs, caches = [], []
    for backend in (select_backend("triton", device=DEVICE, dtype=torch.float32, head_dim=layer.head_dim,
                                   block_size=block_size, max_model_len=64), ReferenceAttention()):
        caches.append(cache.clone())
        outputs.append(backend.forward(query, key, value, caches[-1], backend.prepare(metadata), layer))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    assert torch.equal(caches[0], caches[1])


def test_model_greedy_identical_to_reference_backend(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked prefills beside decodes (a budget of 16 tokens), contexts past a block. The triton
    backend's model runs the fused norm, activation and rotary kernels, every layer every step;
    the other backends' models run none of them."""
    prompts = random_prompts(3, [1, 21, 9], 512)
    calls = {name: 0 for name in ("rms_norm", "silu_and_mul", "rotary_embedding")}
    for name in calls:
        kernel = getattr(fused, name)

        def counted(*args: Any, _kernel: Any = kernel, _name: str = name) -> Any:
            calls[_name] += 1
            return _kernel(*args)

        monkeypatch.setattr(fused, name, counted)

    def greedy(backend: str) -> tuple[dict[int, list[int]], int]:
        # Eager: on a GPU too every step calls the kernels from Python (a graph replay does not).
        runner = ModelRunner(
            ModelRunnerConfig(
                model=str(tiny_model), device=DEVICE.type, attention_backend=backend, num_kv_blocks=16,
                enforce_eager=True,
            )
        )
        assert runner.model_info.attention_backend == backend
        generation = generate(runner, prompts, 5, token_budget=16, max_num_seqs=4)
        assert generation.num_mixed_steps > 0
        return generation.outputs, len(generation.step_sizes)

    reference, _ = greedy("reference")
    assert calls == dict.fromkeys(calls, 0)
    triton, num_steps = greedy("triton")
    assert triton == reference
    num_layers = 2  # two norms each, and the final one
    assert calls == {
        "rms_norm": num_steps * (2 * num_layers + 1),
        "silu_and_mul": num_steps * num_layers,
        "rotary_embedding": num_steps * num_layers,
    }


def test_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    # Without flash-attn, auto takes triton on CUDA (no GPU needed to decide), never on the CPU.
    assert auto_backend_name(cuda, torch.bfloat16, 128) == ("flash" if is_flash_attn_available() else "triton")
    assert auto_backend_name(cpu, torch.float32, 128) == "sdpa"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("triton", device=cpu, dtype=torch.float32, head_dim=64, block_size=16).name == "triton"
    assert triton_unsupported_reason(cuda, torch.float64, 64) == "it takes float32, float16 or bfloat16, not torch.float64"
    assert triton_unsupported_reason(cuda, torch.bfloat16, 128) is None
    assert "interpreter computes bfloat16 wrongly" in str(triton_unsupported_reason(cpu, torch.bfloat16, 64))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"'triton' cannot run: it runs on CUDA, or on the CPU under Triton's "
                                         r"interpreter \(TRITON_INTERPRET=1\), not on cpu"):
        select_backend("triton", device=cpu, dtype=torch.float32, head_dim=64, block_size=16)
