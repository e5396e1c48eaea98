"""CUDA graphs on a GPU (skipped without one): the demo model in bf16 decodes greedily as
transformers does, the captured graphs replay exactly what the padded path computes eagerly,
and start-up reports the capture."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from harness import Generation, generate, random_prompts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")

DEMO_SHAPE = dict(vocab_size=2048, hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=2)
# Where transformers' two best next tokens are closer than this (log-probability), bf16 rounding
# may pick either: greedy paths may part there, and are compared up to it.
NEAR_TIE = 0.05
PROMPT_LENGTHS = [5, 40, 17, 90, 1, 33, 64, 12]
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def bf16_demo(model_factory: Callable[..., Path]) -> Path:
    return model_factory(**DEMO_SHAPE, dtype="bfloat16")


def run(model_dir: Path, prompts: list[list[int]], **config: Any) -> tuple[ModelRunner, Generation]:
    pad_decodes = config.pop("pad_decodes", None)
    runner = ModelRunner(
        ModelRunnerConfig(
            model=str(model_dir), device="cuda", dtype="bfloat16", max_model_len=256, max_num_seqs=8, **config
        )
    )
    runner.init_kv_cache(256, pad_decodes=pad_decodes)
    return runner, generate(runner, prompts, NEW_TOKENS, num_blocks=256, max_num_seqs=8)


def hf_greedy_with_margins(model_dir: Path, prompt: list[int]) -> tuple[list[int], list[float]]:
    """transformers' greedy tokens in bf16 on the GPU, and at each the gap between its two best
    log-probabilities."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            output_scores=True,
            return_dict_in_generate=True,
        )
    top2 = [torch.log_softmax(score[0].float(), dim=-1).topk(2).values for score in out.scores]
    return out.sequences[0, len(prompt) :].tolist(), [float(v[0] - v[1]) for v in top2]


def test_graphs_decode_greedily_as_transformers_does_in_bf16(bf16_demo: Path) -> None:
    prompts = random_prompts(7, PROMPT_LENGTHS, 2048)
    runner, generation = run(bf16_demo, prompts)
    assert re.match(r"captured \d+ CUDA graphs in [\d.]+ s \(batch sizes 1\.\.8, widths", runner.cuda_graphs)
    compared = 0
    for request_id, prompt in enumerate(prompts):
        expected, margins = hf_greedy_with_margins(bf16_demo, prompt)
        ours = generation.outputs[request_id]
        agree = next((i for i, (a, b) in enumerate(zip(ours, expected, strict=True)) if a != b), len(expected))
        if agree < len(expected):
            assert margins[agree] < NEAR_TIE, f"request {request_id} parts from transformers at token {agree}"
            assert expected[:agree] == ours[:agree]
        compared += agree
    assert compared >= len(prompts) * NEW_TOKENS // 2


def test_graph_replays_equal_the_padded_path_run_eagerly(bf16_demo: Path) -> None:
    prompts = random_prompts(8, PROMPT_LENGTHS, 2048)
    graphs, replayed = run(bf16_demo, prompts)
    eager_padded, eager = run(bf16_demo, prompts, enforce_eager=True, pad_decodes=True)
    assert graphs.padded_decode is not None and graphs.padded_decode.graphs
    assert eager_padded.padded_decode is not None and not eager_padded.padded_decode.graphs
    assert replayed.outputs == eager.outputs
