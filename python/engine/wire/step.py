"""What the engine actor sends its model workers each iteration, and what comes back.

A step is the scheduler's batch in columns (little-endian arrays as `bytes`, one entry per
scheduled request, read with `numpy.frombuffer`), built by `engine.core.step_builder`. A
request's full data (prompt tokens, sampling parameters) travels once, in `new_requests`; after
that only its slot, chunk and new KV blocks do. Each worker keeps, per request (by slot), the
token ids (prompt, then every sampled token) and the KV block table, and applies a step in this
order:

0. (stages before the last of a pipeline) the `forwarded_*` tokens: append each to its request.
1. `finished_ids`: forget these requests (the scheduler dropped them; their slots are free).
2. `new_requests`: start tracking these, each in its slot.
3. `preempted_ids`: clear their block tables (their KV is gone; they will be prefilled again)
   and keep only their first `preempted_num_tokens` tokens (async scheduling may have sampled
   more for them in a step the scheduler then dropped).
4. the entries: append each one's new blocks to its table, then run the model over tokens
   `token_ids[num_computed_tokens : num_computed_tokens + num_tokens]` at those positions, and
   sample one token for each entry that produces one, appending it to the request's tokens.

Rank 0 answers with a `StepOutput`; with tensor parallelism every rank samples the same tokens.
Log-probabilities travel only for requests whose `SamplingParams` ask for them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from engine.wire.sampling_params import SamplingParams

# `StepInput.flags` bits (the scheduler's `Batch.flags`).
PRODUCES_TOKEN = 1
IS_PREFILL = 2
IS_NEW = 4


class NewRequest(msgspec.Struct, array_like=True, gc=False):
    request_id: int
    prompt_token_ids: list[int]
    sampling: SamplingParams


class StepInput(msgspec.Struct, array_like=True, gc=False):
    step_id: int
    """`<u8` request ids."""
    ids: bytes
    """`<u4` slots (small integers unique among live requests)."""
    slots: bytes
    """`<u4` tokens each entry runs."""
    num_tokens: bytes
    """`<u4` where each entry starts."""
    num_computed_tokens: bytes
    """`u1` PRODUCES_TOKEN | IS_PREFILL | IS_NEW."""
    flags: bytes
    """`<u4`, one more than entries: entry i's blocks are new_block_ids[offsets[i]:offsets[i + 1]]."""
    new_block_offsets: bytes
    """`<u4`."""
    new_block_ids: bytes
    new_requests: list[NewRequest] = []
    preempted_ids: list[int] = []
    preempted_num_tokens: list[int] = []
    finished_ids: list[int] = []
    """Tokens earlier steps sampled (`<u8` ids, `<u4` slots, `<u4` tokens), for the workers of
    pipeline stages before the last, which do not sample: they apply them first."""
    forwarded_ids: bytes = b""
    forwarded_slots: bytes = b""
    forwarded_token_ids: bytes = b""

    @property
    def num_entries(self) -> int:
        return len(self.ids) // 8

    @staticmethod
    def from_entries(
        step_id: int,
        entries: Sequence["StepEntry"],
        new_requests: Sequence[NewRequest] = (),
        *,
        preempted: Sequence[tuple[int, int]] = (),
        finished_ids: Sequence[int] = (),
    ) -> "StepInput":
        """A step written out by hand (profiling, tests): `preempted` holds (request id, tokens
        kept). The engine builds its steps from scheduler batches (`engine.core.step_builder`)."""

        def column(values: Sequence[int], dtype: str) -> bytes:
            return np.asarray(values, dtype=dtype).tobytes()

        new_ids = {new.request_id for new in new_requests}
        flags = [
            PRODUCES_TOKEN * e.produces_token + IS_PREFILL * (e.num_tokens > 1) + IS_NEW * (e.request_id in new_ids)
            for e in entries
        ]
        offsets = np.concatenate(([0], np.cumsum([len(e.new_block_ids) for e in entries], dtype=np.int64)))
        return StepInput(
            step_id=step_id,
            ids=column([e.request_id for e in entries], "<u8"),
            slots=column([e.slot for e in entries], "<u4"),
            num_tokens=column([e.num_tokens for e in entries], "<u4"),
            num_computed_tokens=column([e.num_computed_tokens for e in entries], "<u4"),
            flags=column(flags, "u1"),
            new_block_offsets=column(offsets.tolist(), "<u4"),
            new_block_ids=column([b for e in entries for b in e.new_block_ids], "<u4"),
            new_requests=list(new_requests),
            preempted_ids=[request_id for request_id, _ in preempted],
            preempted_num_tokens=[num_tokens for _, num_tokens in preempted],
            finished_ids=list(finished_ids),
        )


    def columns(self) -> "StepColumns":
        return StepColumns(
            ids=np.frombuffer(self.ids, dtype="<u8"),
            slots=np.frombuffer(self.slots, dtype="<u4"),
            num_tokens=np.frombuffer(self.num_tokens, dtype="<u4"),
            num_computed_tokens=np.frombuffer(self.num_computed_tokens, dtype="<u4"),
            flags=np.frombuffer(self.flags, dtype=np.uint8),
            new_block_offsets=np.frombuffer(self.new_block_offsets, dtype="<u4"),
            new_block_ids=np.frombuffer(self.new_block_ids, dtype="<u4"),
        )


@dataclass(frozen=True, slots=True)
class StepEntry:
    """One entry of a hand-written step (`StepInput.from_entries`)."""

    request_id: int
    slot: int
    num_tokens: int
    num_computed_tokens: int
    produces_token: bool
    new_block_ids: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class StepColumns:
    """A step's columns as read-only numpy views."""

    ids: np.ndarray
    slots: np.ndarray
    num_tokens: np.ndarray
    num_computed_tokens: np.ndarray
    flags: np.ndarray
    new_block_offsets: np.ndarray
    new_block_ids: np.ndarray

    @property
    def produces_token(self) -> np.ndarray:
        return (self.flags & PRODUCES_TOKEN) != 0


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
    """`<u4`, one per entry that produces a token, in batch order."""
    sampled_token_ids: bytes
    """Seconds the whole step took on the answering rank: `prepare_s`, the forward pass, sampling."""
    execute_s: float = 0.0
    """Seconds from the end of that rank's previous step to the start of this one: answering the
    previous one, waiting for this one, receiving it."""
    idle_s: float = 0.0
    """Empty when no request of the step asked for logprobs; else one per sampled token."""
    logprobs: list[TokenLogprobs | None] = []
    prompt_logprobs: list[PromptLogprobs] = []
    """Seconds from the step's arrival to launching the model (its requests' state, the inputs,
    the attention backend's per-step preparation)."""
    prepare_s: float = 0.0
    """Seconds of the forward pass, from launching the model to its logits (device time on CUDA)."""
    forward_s: float = 0.0
    """When the answering rank sent this output (`time.perf_counter()`, CLOCK_MONOTONIC on Linux:
    the engine process reads the same clock), so the engine can tell how long it took to arrive."""
    sent_at: float = 0.0
