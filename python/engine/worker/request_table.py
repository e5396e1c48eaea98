"""What a model worker remembers about each request between steps: its token ids (prompt, then
every sampled token) and its KV block table, plus how its tokens are sampled.

`apply(step)` follows the order of `engine.wire.step`: finished, new, preempted, then the chunks'
new blocks. It checks the whole step first and changes nothing when any part is inconsistent,
so a bad step leaves every request as it was.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import ScheduledChunk, StepInput


@dataclass(slots=True)
class RequestState:
    token_ids: list[int]
    sampling: SamplingParams
    num_prompt_tokens: int
    block_table: list[int] = field(default_factory=list)
    """The request's own generator when it has a seed (on the rank that samples)."""
    generator: torch.Generator | None = None
    """The first prompt position whose logprob is not yet reported (prompt_logprobs only): a
    request prefilled again after a preemption does not report its prompt twice."""
    next_prompt_logprob_position: int = 1


@dataclass(frozen=True, slots=True)
class ScheduledWork:
    """One chunk of a step, beside the request it runs for."""

    request: RequestState
    chunk: ScheduledChunk

    @property
    def start(self) -> int:
        return self.chunk.num_computed_tokens

    @property
    def end(self) -> int:
        return self.chunk.num_computed_tokens + self.chunk.num_tokens


class RequestTable:
    """`new_generator(seed)`, when given, makes the generator of each new seeded request."""

    def __init__(
        self,
        *,
        vocab_size: int,
        max_model_len: int,
        block_size: int,
        num_blocks: int,
        new_generator: Callable[[int], torch.Generator] | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.new_generator = new_generator
        self.requests: dict[int, RequestState] = {}

    def __len__(self) -> int:
        return len(self.requests)

    def apply(self, step: StepInput) -> list[ScheduledWork]:
        """Validates `step`, then applies everything but the sampled tokens; returns the chunks to run."""
        self._validate(step)
        for request_id in step.finished_ids:
            del self.requests[request_id]
        for new in step.new_requests:
            seed = new.sampling.seed
            generator = self.new_generator(seed) if self.new_generator is not None and seed is not None else None
            self.requests[new.request_id] = RequestState(
                list(new.prompt_token_ids), new.sampling, len(new.prompt_token_ids), generator=generator
            )
        for request_id in step.preempted_ids:
            self.requests[request_id].block_table.clear()
        work = []
        for chunk in step.chunks:
            request = self.requests[chunk.request_id]
            request.block_table.extend(chunk.new_block_ids)
            work.append(ScheduledWork(request, chunk))
        return work

    def _validate(self, step: StepInput) -> None:
        tracked = set(self.requests)
        _check_unique("finished_ids", step.finished_ids)
        for request_id in step.finished_ids:
            if request_id not in tracked:
                raise ValueError(f"step {step.step_id}: finished request {request_id} is unknown")
        tracked -= set(step.finished_ids)
        new_lengths: dict[int, int] = {}
        for new in step.new_requests:
            if new.request_id in tracked or new.request_id in new_lengths:
                raise ValueError(f"step {step.step_id}: new request {new.request_id} is already known")
            self._validate_new(step.step_id, new.request_id, new.prompt_token_ids, new.sampling)
            new_lengths[new.request_id] = len(new.prompt_token_ids)
        tracked |= set(new_lengths)
        _check_unique("preempted_ids", step.preempted_ids)
        for request_id in step.preempted_ids:
            if request_id not in tracked:
                raise ValueError(f"step {step.step_id}: preempted request {request_id} is unknown")
        preempted = set(step.preempted_ids)
        _check_unique("chunk request ids", [chunk.request_id for chunk in step.chunks])
        for chunk in step.chunks:
            if chunk.request_id not in tracked:
                raise ValueError(f"step {step.step_id}: chunk for unknown request {chunk.request_id}")
            if chunk.request_id in new_lengths:
                num_known_tokens = new_lengths[chunk.request_id]
                table_len = 0
            else:
                state = self.requests[chunk.request_id]
                num_known_tokens = len(state.token_ids)
                table_len = 0 if chunk.request_id in preempted else len(state.block_table)
            self._validate_chunk(step.step_id, chunk, num_known_tokens, table_len)

    def _validate_new(
        self, step_id: int, request_id: int, prompt_token_ids: list[int], sampling: SamplingParams
    ) -> None:
        if not prompt_token_ids:
            raise ValueError(f"step {step_id}: new request {request_id} has an empty prompt")
        if len(prompt_token_ids) > self.max_model_len:
            raise ValueError(
                f"step {step_id}: new request {request_id} has {len(prompt_token_ids)} prompt tokens, "
                f"more than max_model_len ({self.max_model_len})"
            )
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= self.vocab_size:
            bad = next(t for t in prompt_token_ids if not 0 <= t < self.vocab_size)
            raise ValueError(
                f"step {step_id}: new request {request_id} has token id {bad} outside the vocabulary "
                f"(size {self.vocab_size})"
            )
        try:
            sampling.validate(self.vocab_size)
        except ValueError as error:
            raise ValueError(f"step {step_id}: new request {request_id}: {error}") from None

    def _validate_chunk(self, step_id: int, chunk: ScheduledChunk, num_known_tokens: int, table_len: int) -> None:
        where = f"step {step_id}: chunk of request {chunk.request_id}"
        if chunk.num_tokens < 1:
            raise ValueError(f"{where} has num_tokens {chunk.num_tokens}; it must be at least 1")
        if chunk.num_computed_tokens < 0:
            raise ValueError(f"{where} has negative num_computed_tokens {chunk.num_computed_tokens}")
        end = chunk.num_computed_tokens + chunk.num_tokens
        if end > num_known_tokens:
            raise ValueError(
                f"{where} runs tokens {chunk.num_computed_tokens}..{end}, past the request's {num_known_tokens} tokens"
            )
        if chunk.produces_token and end != num_known_tokens:
            raise ValueError(
                f"{where} samples a token after token {end}, but the request has {num_known_tokens} tokens"
            )
        if end > self.max_model_len:
            raise ValueError(f"{where} reaches position {end}, past max_model_len ({self.max_model_len})")
        for block_id in chunk.new_block_ids:
            if not 0 <= block_id < self.num_blocks:
                raise ValueError(f"{where} got block {block_id}, outside the KV cache (0..{self.num_blocks - 1})")
        num_blocks = table_len + len(chunk.new_block_ids)
        if num_blocks * self.block_size < end:
            raise ValueError(
                f"{where} writes up to position {end - 1}, but its block table holds {num_blocks} blocks "
                f"of {self.block_size} tokens"
            )


def _check_unique(what: str, ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{what} lists request {duplicate} twice")
