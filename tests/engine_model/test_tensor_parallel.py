"""TP=2 on gloo: two processes, each loading its shard, produce identical tokens equal to Hugging Face."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from engine.worker.model_runner import ModelRunnerConfig

from harness import free_port, hf_greedy, random_prompts, tp_worker


@pytest.mark.parametrize(
    "shape",
    [
        # 2 KV heads split one per rank; the vocabulary (509) does not divide evenly: the last rank pads.
        dict(vocab_size=509),
        # One KV head replicated on both ranks; Qwen2 biases and tied embeddings.
        dict(architecture="Qwen2ForCausalLM", num_kv_heads=1, tie_word_embeddings=True),
    ],
    ids=["llama-padded-vocab", "qwen2-replicated-kv"],
)
def test_two_ranks_match_hf(model_factory: Callable[..., Path], shape: dict[str, object]) -> None:
    model_dir = model_factory(**shape)
    prompts = random_prompts(3, [21, 6, 35], 300)
    expected = hf_greedy(model_dir, prompts, 10)
    config = ModelRunnerConfig(
        model=str(model_dir),
        tensor_parallel_size=2,
        distributed_init_method=f"tcp://127.0.0.1:{free_port()}",
    )
    queue = mp.get_context("spawn").SimpleQueue()
    # Raises (with the rank's traceback) when either rank fails.
    mp.spawn(tp_worker, args=(config, prompts, 10, queue), nprocs=2, join=True)
    results = dict(queue.get() for _ in range(2))
    assert results[0] == results[1]
    assert [results[0][i] for i in range(len(prompts))] == expected
