"""Greedy outputs token-identical to Hugging Face transformers on the same random weights (fp32, CPU)."""

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import generate, hf_greedy, random_prompts

from engine.model_runner import ModelRunner, ModelRunnerConfig


def runner_for(model_dir: Path, **overrides: object) -> ModelRunner:
    return ModelRunner(ModelRunnerConfig(model=str(model_dir), **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_single_request_matches_hf(tiny_llama: Path, backend: str) -> None:
    prompt = random_prompts(0, [13], 512)
    expected = hf_greedy(tiny_llama, prompt, 12)
    generation = generate(runner_for(tiny_llama, attention_backend=backend, num_kv_blocks=32), prompt, 12)
    assert generation.outputs[0] == expected[0]
