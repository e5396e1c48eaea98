"""Chooses one token per row of logits, each row by its own request's `SamplingParams`.

Logits are processed first (`engine.worker.logits_processors`: logit bias, min_tokens, penalties).
Greedy rows (`SamplingParams.is_greedy`: temperature below 1e-5) take the argmax. Other rows
divide by their temperature, drop tokens below `min_p` of the most likely one, keep their top-k
and top-p tokens (top-p only in rows with top_p < 1), and draw from the softmax with the
exponential race (argmax of p / E with E ~ Exp(1)), which equals sampling from p. The noise of a
seeded request comes from that request's own `torch.Generator`, one draw of `vocab_size`
numbers per token, so its tokens depend only on its seed and its logits, never on which other
requests share the batch. Unseeded rows share the sampler's generator.

Rows whose request asks for `logprobs` also get the log-probability of the chosen token and of
the most likely alternatives, from the raw logits (before any processing).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.worker.logits_processors import TokenHistory, process_logits
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import TokenLogprobs


@dataclass(frozen=True, slots=True)
class SamplingRow:
    """What the sampler needs of one request: how to sample, its own generator (seeded
    requests), and its tokens so far (for penalties and min_tokens)."""

    params: SamplingParams
    generator: torch.Generator | None
    history: TokenHistory


@dataclass(frozen=True, slots=True)
class SampledTokens:
    token_ids: torch.Tensor
    """Empty when no row asked for logprobs; else one entry per row (None where not asked)."""
    logprobs: list[TokenLogprobs | None]


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0, eos_token_ids: Sequence[int] = ()) -> None:
        self.device = device
        self.eos_token_ids = tuple(eos_token_ids)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def new_generator(self, seed: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    def sample(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> SampledTokens:
        """`logits` [rows, vocab]; returns one token id per row."""
        if logits.shape[0] != len(rows):
            raise ValueError(f"{logits.shape[0]} rows of logits for {len(rows)} sampling rows")
        logits = logits.float()
        params = [row.params for row in rows]
        processed = process_logits(logits, params, [row.history for row in rows], self.eos_token_ids)
        tokens = self._choose(processed, params, [row.generator for row in rows])
        asking = [i for i, p in enumerate(params) if p.logprobs is not None]
        if not asking:
            return SampledTokens(tokens, [])
        found = top_logprobs(logits, asking, [params[i].logprobs or 0 for i in asking], tokens)
        logprobs: list[TokenLogprobs | None] = [None] * len(rows)
        for i, entry in zip(asking, found, strict=True):
            logprobs[i] = entry
        return SampledTokens(tokens, logprobs)

    def _choose(
        self, logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
    ) -> torch.Tensor:
        greedy_tokens = logits.argmax(dim=-1)
        random_rows = [row for row, p in enumerate(params) if not p.is_greedy]
        if not random_rows:
            return greedy_tokens
        row_params = [params[row] for row in random_rows]
        rows = torch.tensor(random_rows, dtype=torch.int64, device=logits.device)
        probabilities = filtered_probabilities(logits.index_select(0, rows), row_params)
        noise = torch.empty_like(probabilities)
        unseeded = [i for i, row in enumerate(random_rows) if generators[row] is None]
        if unseeded:
            shared = torch.empty((len(unseeded), probabilities.shape[1]), device=logits.device)
            shared.exponential_(generator=self.generator)
            noise[unseeded] = shared
        for i, row in enumerate(random_rows):
            generator = generators[row]
            if generator is not None:
                noise[i].exponential_(generator=generator)
        noise.clamp_(min=torch.finfo(noise.dtype).tiny)
        tokens = greedy_tokens.clone()
        tokens[rows] = (probabilities / noise).argmax(dim=-1)
        return tokens


def top_logprobs(
    logits: torch.Tensor, rows: Sequence[int], counts: Sequence[int], chosen: torch.Tensor
) -> list[TokenLogprobs]:
    """For each of `rows` of raw `logits`: the log-probability of its `chosen` token and its
    `counts[i]` most likely tokens (most likely first)."""
    index = torch.tensor(list(rows), dtype=torch.int64, device=logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    chosen_logprobs = logprobs.gather(1, chosen.index_select(0, index)[:, None])[:, 0].tolist()
    most = max(counts)
    top_values, top_ids = logprobs.topk(most, dim=-1) if most else (logprobs[:, :0], logprobs[:, :0].long())
    values, ids = top_values.tolist(), top_ids.tolist()
    return [
        TokenLogprobs(chosen_logprobs[i], ids[i][:count], values[i][:count]) for i, count in enumerate(counts)
    ]


def filtered_probabilities(logits: torch.Tensor, params: Sequence[SamplingParams]) -> torch.Tensor:
    """Softmax of `logits / temperature` over each row's tokens that pass min_p, top-k and top-p
    (zero elsewhere)."""
    vocab_size = logits.shape[1]
    temperatures = torch.tensor([p.temperature for p in params], dtype=logits.dtype, device=logits.device)
    logits = logits / temperatures[:, None]
    if any(p.min_p > 0.0 for p in params):
        probabilities = torch.softmax(logits, dim=-1)
        min_p = torch.tensor([p.min_p for p in params], dtype=logits.dtype, device=logits.device)[:, None]
        below = probabilities < min_p * probabilities.amax(dim=-1, keepdim=True)
        logits = logits.masked_fill(below, float("-inf"))
    top_ks = [p.top_k if 0 < p.top_k < vocab_size else vocab_size for p in params]
    top_ps = [p.top_p for p in params]
    if all(k == vocab_size for k in top_ks) and all(p >= 1.0 for p in top_ps):
        return torch.softmax(logits, dim=-1)

    sorted_logits, sorted_ids = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab_size, device=logits.device)[None, :]
    k = torch.tensor(top_ks, device=logits.device)[:, None]
    dropped = ranks >= k
    sorted_logits = sorted_logits.masked_fill(dropped, float("-inf"))
    if any(p < 1.0 for p in top_ps):
        sorted_probabilities = torch.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities
        p = torch.tensor(top_ps, dtype=logits.dtype, device=logits.device)[:, None]
        # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it
        # does. Only in rows that ask for it: a float32 running sum can reach 1.0 before the tail.
        has_top_p = torch.tensor([p < 1.0 for p in top_ps], device=logits.device)[:, None]
        dropped |= (mass_before >= p) & has_top_p
        dropped[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(dropped, float("-inf"))
    filtered = torch.full_like(logits, float("-inf")).scatter(1, sorted_ids, sorted_logits)
    return torch.softmax(filtered, dim=-1)
