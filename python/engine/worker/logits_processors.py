"""Per-request changes to next-token logits before a token is chosen (see `SamplingParams` for
the order): logit bias, the `min_tokens` mask, and the repetition, frequency and presence
penalties. Only rows that ask for a change are touched; the others cost nothing."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.wire.sampling_params import SamplingParams


@dataclass(frozen=True, slots=True)
class TokenHistory:
    """A request's tokens so far: the prompt's, then its outputs (`token_ids` is not copied)."""

    token_ids: list[int]
    num_prompt_tokens: int

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens


def needs_processing(params: SamplingParams, history: TokenHistory) -> bool:
    return bool(params.logit_bias) or params.has_penalties or history.num_output_tokens < params.min_tokens


def process_logits(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    histories: Sequence[TokenHistory],
    eos_token_ids: Sequence[int],
) -> torch.Tensor:
    """`logits` [rows, vocab] float32; returns them processed (the same tensor when no row asks)."""
    rows = [row for row, (p, h) in enumerate(zip(params, histories, strict=True)) if needs_processing(p, h)]
    if not rows:
        return logits
    logits = logits.clone()
    for row in rows:
        apply_to_row(logits[row], params[row], histories[row], eos_token_ids)
    return logits


def apply_to_row(
    logits: torch.Tensor, params: SamplingParams, history: TokenHistory, eos_token_ids: Sequence[int]
) -> None:
    """Processes one row `[vocab]` in place."""
    device = logits.device
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias), dtype=torch.int64, device=device)
        logits.index_add_(0, ids, torch.tensor(list(params.logit_bias.values()), dtype=logits.dtype, device=device))
    if history.num_output_tokens < params.min_tokens:
        banned = set(params.stop_token_ids) if params.ignore_eos else {*params.stop_token_ids, *eos_token_ids}
        if banned:
            logits[torch.tensor(sorted(banned), dtype=torch.int64, device=device)] = float("-inf")
    if not params.has_penalties:
        return
    outputs = torch.tensor(history.token_ids[history.num_prompt_tokens :], dtype=torch.int64, device=device)
    if params.repetition_penalty != 1.0:
        seen = torch.unique(torch.tensor(history.token_ids, dtype=torch.int64, device=device))
        penalty = params.repetition_penalty
        chosen = logits[seen]
        logits[seen] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    if (params.frequency_penalty or params.presence_penalty) and outputs.numel():
        counts = torch.bincount(outputs, minlength=logits.shape[0]).to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).to(logits.dtype)
