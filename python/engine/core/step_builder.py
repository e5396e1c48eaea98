"""The one function that turns a scheduler batch into the step the workers run (see
`engine.wire.step`): the batch's columns as they come from Rust, plus each new request's prompt
and sampling parameters. The engine, the tests' harness and the benchmarks all build steps here."""

from collections.abc import Callable

from engine.scheduler import Batch
from engine.wire.step import NewRequest, StepInput


def build_step(
    step_id: int,
    batch: Batch,
    new_request: Callable[[int], NewRequest],
    forwarded: tuple[bytes, bytes, bytes] = (b"", b"", b""),
) -> StepInput:
    """`new_request(request_id)`: the full data of a request the workers have not seen yet;
    `forwarded`: (ids, slots, tokens) sampled since the last step, for pipeline stages."""
    forwarded_ids, forwarded_slots, forwarded_token_ids = forwarded
    ids, slots, num_tokens, num_computed_tokens, flags, new_block_offsets, new_block_ids = batch.columns()
    new_request_ids, preempted_ids, preempted_num_tokens, finished_ids = batch.membership()
    return StepInput(
        step_id=step_id,
        ids=ids,
        slots=slots,
        num_tokens=num_tokens,
        num_computed_tokens=num_computed_tokens,
        flags=flags,
        new_block_offsets=new_block_offsets,
        new_block_ids=new_block_ids,
        new_requests=[new_request(request_id) for request_id in new_request_ids],
        preempted_ids=preempted_ids,
        preempted_num_tokens=preempted_num_tokens,
        finished_ids=finished_ids,
        forwarded_ids=forwarded_ids,
        forwarded_slots=forwarded_slots,
        forwarded_token_ids=forwarded_token_ids,
    )
