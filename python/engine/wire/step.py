"""What the engine actor sends its model workers each iteration, and what comes back.

A request's full data (prompt tokens, sampling parameters) travels once, in `new_requests`;
afterwards a step carries only deltas. Each worker keeps, per request, the token ids (prompt,
then every sampled token) and the KV block table, and applies a `StepInput` in this order:

1. `finished_ids`: forget these requests.
2. `new_requests`: start tracking these.
3. `preempted_ids`: clear their block tables (their KV is gone; they will be prefilled again).
4. `chunks`: append `new_block_ids` to each block table, then run the model over tokens
   `token_ids[num_computed_tokens : num_computed_tokens + num_tokens]` at those positions, and
   sample one token for each chunk that `produces_token`, appending it to the request's tokens.

Rank 0 answers with a `StepOutput`; with tensor parallelism every rank samples the same tokens.
Log-probabilities travel only for requests whose `SamplingParams` ask for them.
"""

import msgspec

from engine.wire.sampling_params import SamplingParams


class NewRequest(msgspec.Struct, array_like=True, gc=False):
    request_id: int
    prompt_token_ids: list[int]
    sampling: SamplingParams


class ScheduledChunk(msgspec.Struct, array_like=True, gc=False):
    request_id: int
    num_tokens: int
    num_computed_tokens: int
    produces_token: bool
    new_block_ids: list[int]


class StepInput(msgspec.Struct, array_like=True, gc=False):
    step_id: int
    chunks: list[ScheduledChunk]
    new_requests: list[NewRequest] = []
    preempted_ids: list[int] = []
    finished_ids: list[int] = []


class TokenLogprobs(msgspec.Struct, array_like=True, gc=False):
    """One token's log-probability and the most likely tokens at its position (most likely first)."""

    logprob: float
    top_token_ids: list[int]
    top_logprobs: list[float]


class PromptLogprobs(msgspec.Struct, array_like=True, gc=False):
    """Log-probabilities of a request's prompt tokens at positions `first_position` onwards
    (position p given the tokens before it; position 0 never has one)."""

    request_id: int
    first_position: int
    tokens: list[TokenLogprobs]


class StepOutput(msgspec.Struct, array_like=True, gc=False):
    step_id: int
    """One per chunk that `produces_token`, in chunk order."""
    sampled_token_ids: list[int]
    """Seconds the model forward and sampling took on rank 0."""
    execute_s: float = 0.0
    """Empty when no request of the step asked for logprobs; else one per sampled token."""
    logprobs: list[TokenLogprobs | None] = []
    prompt_logprobs: list[PromptLogprobs] = []
