"""Greedy outputs token-identical to Hugging Face transformers on the same random weights (fp32,
CPU), with the runner driven by the real scheduler exactly as the engine drives it."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.worker.attention import AttentionMetadata
from engine.worker.model_runner import ModelRunner, ModelRunnerConfig

from harness import generate, hf_greedy, hf_logits, random_prompts


def runner_for(model_dir: Path, **overrides: object) -> ModelRunner:
    return ModelRunner(ModelRunnerConfig(model=str(model_dir), **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_single_request(tiny_llama: Path, backend: str) -> None:
    prompt = random_prompts(0, [13], 512)
    expected = hf_greedy(tiny_llama, prompt, 12)
    generation = generate(runner_for(tiny_llama, attention_backend=backend, num_kv_blocks=32), prompt, 12)
    assert generation.outputs[0] == expected[0]


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_batch_of_different_lengths(tiny_llama: Path, backend: str) -> None:
    prompts = random_prompts(1, [3, 17, 40, 8, 25, 1], 512)
    expected = hf_greedy(tiny_llama, prompts, 10)
    generation = generate(runner_for(tiny_llama, attention_backend=backend), prompts, 10, num_blocks=128)
    assert [generation.outputs[i] for i in range(len(prompts))] == expected
    assert generation.max_chunk_tokens == 40  # whole prompts, several requests per step
    assert max(generation.step_sizes) > 40


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_chunked_prefill_smaller_than_prompts(tiny_llama: Path, backend: str) -> None:
    prompts = random_prompts(2, [30, 19, 45, 9], 512)
    expected = hf_greedy(tiny_llama, prompts, 8)
    runner = runner_for(tiny_llama, attention_backend=backend, block_size=4)
    generation = generate(runner, prompts, 8, token_budget=8, max_num_seqs=8, num_blocks=128)
    assert [generation.outputs[i] for i in range(len(prompts))] == expected
    assert generation.max_chunk_tokens == 8
    assert generation.num_mixed_steps > 0  # decodes ran beside prefill chunks


def test_small_kv_pool_forces_preemption(tiny_llama: Path) -> None:
    prompts = random_prompts(4, [14, 11, 13, 9], 512)
    expected = hf_greedy(tiny_llama, prompts, 16)
    runner = runner_for(tiny_llama, attention_backend="sdpa", block_size=4)
    generation = generate(runner, prompts, 16, token_budget=32, num_blocks=20)
    assert generation.num_preemptions > 0
    assert [generation.outputs[i] for i in range(len(prompts))] == expected
    # The runner forgot every request but those that finished after the last step.
    assert runner.requests is not None
    assert set(runner.requests.row_of_id) == generation.finished_since_last_step


def test_prefix_cache_hits(tiny_llama: Path) -> None:
    """Requests arriving later reuse the KV blocks of a shared 24-token prefix that the scheduler cached."""
    prefix = random_prompts(8, [24], 512)[0]
    prompts = [prefix + tail for tail in random_prompts(9, [5, 9, 3], 512)]
    expected = hf_greedy(tiny_llama, prompts, 8)
    runner = runner_for(tiny_llama, attention_backend="sdpa", block_size=4)
    generation = generate(
        runner, prompts, 8, token_budget=16, num_blocks=64, enable_prefix_caching=True, arrival_steps=[0, 12, 12]
    )
    assert generation.num_cached_prompt_tokens >= 2 * 24
    assert [generation.outputs[i] for i in range(len(prompts))] == expected


@pytest.mark.parametrize(
    "shape",
    [
        dict(
            num_kv_heads=1,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
        dict(rope_scaling=dict(type="linear", factor=4.0), head_dim=24),
        dict(architecture="MistralForCausalLM", sliding_window=8),
        dict(architecture="Qwen2ForCausalLM", tie_word_embeddings=True),
        dict(architecture="Qwen2ForCausalLM", sliding_window=6, num_layers=4),
        dict(dtype="bfloat16", num_shards=3),
    ],
    ids=["llama3-rope-mqa", "linear-rope-head-dim", "mistral-window", "qwen2-tied", "qwen2-window", "bf16-shards"],
)
def test_architectures_and_options(model_factory: Callable[..., Path], shape: dict[str, object]) -> None:
    model_dir = model_factory(**shape)
    prompts = random_prompts(5, [37, 4, 22], 300)
    expected = hf_greedy(model_dir, prompts, 12)
    for backend in ("reference", "sdpa"):
        runner = runner_for(model_dir, attention_backend=backend, block_size=4, dtype="float32")
        generation = generate(runner, prompts, 12, token_budget=16, num_blocks=64)
        assert [generation.outputs[i] for i in range(len(prompts))] == expected, backend


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_chunked_logits_close_to_hf(model_factory: Callable[..., Path], backend: str) -> None:
    """A prompt run as two chunks over the paged cache gives Hugging Face's logits at every position."""
    model_dir = model_factory(num_kv_heads=1, rope_scaling=dict(type="linear", factor=2.0))
    tokens = random_prompts(6, [29], 512)[0]
    expected = hf_logits(model_dir, tokens)
    runner = runner_for(model_dir, attention_backend=backend, block_size=4)
    runner.init_kv_cache(16)
    table = [9, 3, 12, 0, 7, 5, 14, 1]  # scattered blocks
    logits = []
    for start, end in ((0, 11), (11, 29)):
        metadata = AttentionMetadata.build(
            query_lens=[end - start], seq_lens=[end], block_tables=[table], block_size=4, device=runner.device
        )
        with torch.inference_mode():
            hidden = runner.model(
                torch.tensor(tokens[start:end]), metadata.positions, runner.kv_caches, runner.backend.prepare(metadata)
            )
            logits.append(runner.model.compute_logits(hidden))
    torch.testing.assert_close(torch.cat(logits), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("dtype", "tolerance"), [("bfloat16", 0.15), ("float16", 0.03)])
def test_half_precision_logits_near_fp32_hf(tiny_llama: Path, dtype: str, tolerance: float) -> None:
    """16-bit weights and activations stay within rounding distance of transformers' fp32 logits."""
    tokens = random_prompts(10, [40], 512)[0]
    expected = hf_logits(tiny_llama, tokens)
    runner = runner_for(tiny_llama, dtype=dtype, block_size=4)
    runner.init_kv_cache(10)
    metadata = AttentionMetadata.build(
        query_lens=[40], seq_lens=[40], block_tables=[list(range(10))], block_size=4, device=runner.device
    )
    with torch.inference_mode():
        hidden = runner.model(
            torch.tensor(tokens), metadata.positions, runner.kv_caches, runner.backend.prepare(metadata)
        )
        logits = runner.model.compute_logits(hidden)
    assert logits.dtype == getattr(torch, dtype)
    torch.testing.assert_close(logits.float(), expected, rtol=0.0, atol=tolerance)


@pytest.mark.parametrize("num_blocks", [128, 20])
def test_async_scheduling_gives_the_same_tokens(tiny_llama: Path, num_blocks: int) -> None:
    """Each batch scheduled before the previous one is updated (decodes run on the tokens the
    worker sampled a step earlier), with chunked prefills and, in a small pool, preemptions of
    requests whose batch is still in flight."""
    prompts = random_prompts(5, [14, 11, 30, 9], 512)
    expected = hf_greedy(tiny_llama, prompts, 16)
    runner = runner_for(tiny_llama, attention_backend="sdpa", block_size=4)
    generation = generate(runner, prompts, 16, token_budget=16, num_blocks=num_blocks, async_scheduling=True)
    assert [generation.outputs[i] for i in range(len(prompts))] == expected
    assert generation.num_mixed_steps > 0
    if num_blocks == 20:
        assert generation.num_preemptions > 0
