"""The iteration-level scheduler (Rust), shared by the engine and the simulator.

`Scheduler.schedule(now)` returns a `Batch`: per request, how many tokens run this iteration
(a prefill chunk or one decode token), where in the sequence they start, whether a token is
sampled, and which KV blocks were appended to its block table; plus the requests preempted.
`Scheduler.update(batch, sampled_token_ids, finished_ids, aborted_ids)` applies the outcome
and returns the requests that finished. `TokenLedger` is the engine core's per-slot record of
sampled tokens (latencies, EOS and stop tokens): `TokenLedger.apply` reads a batch in place and
updates the scheduler in the same call.
"""

from engine._scheduler import (
    IS_NEW,
    IS_PREFILL,
    PRODUCES_TOKEN,
    Batch,
    DuplicateRequestError,
    FinishedRequest,
    InvalidConfigError,
    InvalidOutputsError,
    InvalidRequestError,
    RecordedTokens,
    RequestState,
    ScheduledRequest,
    Scheduler,
    SchedulerConfig,
    SchedulerError,
    TokenLedger,
    TooManyBatchesInFlightError,
    UnknownRequestError,
)

POLICIES = ("sarathi", "vllm", "orca", "faster_transformer", "lightllm")

__all__ = [
    "IS_NEW",
    "IS_PREFILL",
    "POLICIES",
    "PRODUCES_TOKEN",
    "Batch",
    "DuplicateRequestError",
    "FinishedRequest",
    "InvalidConfigError",
    "InvalidOutputsError",
    "InvalidRequestError",
    "RecordedTokens",
    "RequestState",
    "ScheduledRequest",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "TokenLedger",
    "TooManyBatchesInFlightError",
    "UnknownRequestError",
]
