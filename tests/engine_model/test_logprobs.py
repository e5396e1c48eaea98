"""Output and prompt logprobs from the runner equal Hugging Face transformers' log-softmax of the
same weights, also when prompts are prefilled in chunks beside other requests."""

from pathlib import Path

import pytest
import torch

from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams

from harness import generate, hf_logits, random_prompts

TOP = 4


@pytest.mark.parametrize("token_budget", [7, 512])
def test_output_and_prompt_logprobs_match_transformers(tiny_llama: Path, token_budget: int) -> None:
    prompts = random_prompts(11, [19, 6, 33], 512)
    asking = SamplingParams(temperature=0.0, max_tokens=8, logprobs=TOP, prompt_logprobs=TOP)
    plain = SamplingParams(temperature=0.0, max_tokens=8)
    runner = ModelRunner(ModelRunnerConfig(model=str(tiny_llama), attention_backend="sdpa"))
    generation = generate(
        runner, prompts, 8, sampling=[asking, plain, asking], token_budget=token_budget, max_num_seqs=3, num_blocks=64
    )
    assert set(generation.logprobs) == set(generation.prompt_logprobs) == {0, 2}
    for request_id in (0, 2):
        prompt, outputs = prompts[request_id], generation.outputs[request_id]
        reference = torch.log_softmax(hf_logits(tiny_llama, prompt + outputs), dim=-1)
        # Output token k is predicted at position len(prompt) - 1 + k.
        for k, (token, found) in enumerate(zip(outputs, generation.logprobs[request_id], strict=True)):
            row = reference[len(prompt) - 1 + k]
            assert found.logprob == pytest.approx(float(row[token]), abs=1e-4)
            assert found.top_token_ids == row.topk(TOP).indices.tolist()
            assert found.top_logprobs == pytest.approx(row.topk(TOP).values.tolist(), abs=1e-4)
        positions = generation.prompt_logprobs[request_id]
        assert sorted(positions) == list(range(1, len(prompt)))
        for position, found in positions.items():
            row = reference[position - 1]
            assert found.logprob == pytest.approx(float(row[prompt[position]]), abs=1e-4)
            assert found.top_token_ids == row.topk(TOP).indices.tolist()
