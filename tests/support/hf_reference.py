"""Hugging Face transformers on the same weights, the independent reference for served outputs."""

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


@functools.cache
def hf_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    return model.eval()


def hf_log_softmax(model_dir: Path, tokens: Sequence[int]) -> torch.Tensor:
    """Log-probabilities of the next token after every prefix of `tokens`: `[len(tokens), vocab]`."""
    with torch.inference_mode():
        logits = hf_model(model_dir)(torch.tensor([list(tokens)])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def hf_greedy(model_dir: Path, prompt: Sequence[int], max_new_tokens: int, **generate: Any) -> list[int]:
    """transformers' greedy `generate` (no EOS unless `eos_token_id` is given in `generate`)."""
    ids = torch.tensor([list(prompt)])
    with torch.inference_mode():
        output = hf_model(model_dir).generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=0, **generate,
        )
    generated: list[int] = output[0, len(prompt):].tolist()
    return generated
