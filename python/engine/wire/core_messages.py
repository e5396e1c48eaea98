"""Messages between the front-end process (HTTP and RPC servers, streams, text) and the engine-core
process (scheduler, serving loop, workers), one msgpack frame each.

The core sends one `CoreOutputs` per step: the step's tokens as two columns, the requests that
finished, the step's figures and the scheduler's load. Token ids and times never become Python
objects in the core; the front-end fans them out to the requests' streams.
"""

import msgspec

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import PromptLogprobs, TokenLogprobs

# ----- front-end -> core -----


class AddRequest(msgspec.Struct, tag="add", array_like=True, gc=False):
    request_id: int
    prompt_token_ids: list[int]
    sampling: SamplingParams
    """Wall-clock time (time.time()) and CLOCK_MONOTONIC time (the scheduler's clock) of its arrival."""
    arrival_time: float
    arrival_monotonic: float


class EndRequest(msgspec.Struct, tag="end", array_like=True):
    """Ends a request early: "abort" (its client went away) or "stop" (a stop string in its text)."""

    request_id: int
    reason: str


class StopCore(msgspec.Struct, tag="stop_core", array_like=True):
    """Shut the workers down and exit (at any stage, also while the model loads)."""


# ----- core -> front-end -----


class CoreReady(msgspec.Struct, tag="ready", array_like=True):
    """Sent once the workers hold their KV caches: what the front-end needs to check requests."""

    vocab_size: int
    eos_token_ids: list[int]
    max_model_len: int
    num_kv_blocks: int
    block_size: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    device: str
    dtype: str
    attention_backend: str
    worker_pids: list[int]


class FinishedOutput(msgspec.Struct, array_like=True, gc=False):
    request_id: int
    """"stop", "length" or "abort" (an early end reports the reason it was asked with)."""
    reason: str
    num_output_tokens: int
    """Wall-clock times; NaN where the request never got there."""
    first_scheduled_time: float
    first_token_time: float
    last_token_time: float
    finished_time: float
    num_preemptions: int
    num_cached_tokens: int


class RejectedRequest(msgspec.Struct, array_like=True, gc=False):
    """A request the scheduler refused (the front-end checks what it can first)."""

    request_id: int
    message: str


class IterationStats(msgspec.Struct, array_like=True, gc=False):
    """One step, as `engine.core.engine_core` measured it. `host_s`: the core's own time for the
    step outside the workers: applying its outputs, sending them to the front-end, scheduling and
    sending the next step. `execute_s` and `idle_s`: the answering rank's compute time and its wait
    for this step."""

    batch_size: int
    num_tokens: int
    num_prefill_tokens: int
    num_output_tokens: int
    num_preempted: int
    execute_s: float
    idle_s: float
    host_s: float


class SchedulerLoad(msgspec.Struct, array_like=True, gc=False):
    num_waiting: int
    num_running: int
    num_used_blocks: int
    num_prefix_cache_queried_tokens: int
    num_prefix_cache_hit_tokens: int


class CoreOutputs(msgspec.Struct, tag="outputs", array_like=True, gc=False):
    """What changed since the previous `CoreOutputs`. `ids` (`<u8`) and `token_ids` (`<u4`): the
    tokens produced at wall-clock `time`, in order; `logprobs`: one per token where any of them
    asked for logprobs, else empty. `ttfts` and `tbts` (`<f8`): first-token latencies and gaps of
    those tokens, for the metrics."""

    time: float
    ids: bytes
    token_ids: bytes
    logprobs: list[TokenLogprobs | None]
    prompt_logprobs: list[PromptLogprobs]
    ttfts: bytes
    tbts: bytes
    finished: list[FinishedOutput]
    """Steps completed since the previous message (usually one)."""
    iterations: list[IterationStats]
    load: SchedulerLoad
    rejected: list[RejectedRequest] = []


class CoreFailed(msgspec.Struct, tag="failed", array_like=True):
    """The core cannot serve any more (a worker died, or its loop failed); every request fails."""

    message: str


FrontEndMessage = AddRequest | EndRequest | StopCore
CoreMessage = CoreReady | CoreOutputs | CoreFailed

front_end_decoder = msgspec.msgpack.Decoder(FrontEndMessage)
core_decoder = msgspec.msgpack.Decoder(CoreMessage)
