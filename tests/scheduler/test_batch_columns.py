"""A batch's byte columns, read all at once (`Batch.columns`, as the engine does) or one by one,
say what its per-request objects say."""

import numpy as np

from engine.scheduler import IS_NEW, IS_PREFILL, PRODUCES_TOKEN, Batch, Scheduler, SchedulerConfig


def check_columns(batch: Batch) -> None:
    requests = batch.requests
    ids, slots, num_tokens, num_computed, flags, offsets, block_ids = batch.columns()
    assert (ids, slots, num_tokens, num_computed, flags, offsets, block_ids) == (
        batch.ids, batch.slots, batch.num_tokens_per_request, batch.num_computed_tokens, batch.flags,
        batch.new_block_offsets, batch.new_block_ids,
    )
    assert np.frombuffer(ids, dtype="<u8").tolist() == [r.id for r in requests]
    assert np.frombuffer(slots, dtype="<u4").tolist() == [r.slot for r in requests]
    assert np.frombuffer(num_tokens, dtype="<u4").tolist() == [r.num_tokens for r in requests]
    assert np.frombuffer(num_computed, dtype="<u4").tolist() == [r.num_computed_tokens for r in requests]
    expected_flags = [
        PRODUCES_TOKEN * r.produces_token + IS_PREFILL * r.is_prefill + IS_NEW * r.is_new for r in requests
    ]
    assert list(flags) == expected_flags
    ends = np.frombuffer(offsets, dtype="<u4")
    blocks = np.frombuffer(block_ids, dtype="<u4").tolist()
    assert [blocks[ends[i] : ends[i + 1]] for i in range(len(requests))] == [r.new_block_ids for r in requests]


def test_columns_match_the_scheduled_requests() -> None:
    scheduler = Scheduler(SchedulerConfig(token_budget=40, max_num_seqs=4, max_model_len=128, block_size=16, num_blocks=32))
    scheduler.add_request(1, prompt_len=20, max_new_tokens=4)
    scheduler.add_request(2, prompt_len=50, max_new_tokens=4)
    first = scheduler.schedule(0.0)  # both new, each with its prompt's blocks; 2's chunk samples nothing
    check_columns(first)
    assert [(r.id, r.is_new, r.produces_token, len(r.new_block_ids)) for r in first.requests] == [
        (1, True, True, 2), (2, True, False, 4),
    ]
    scheduler.update(first, np.full(first.num_producing, 5, dtype="<u4").tobytes())
    second = scheduler.schedule(0.0)  # 1 decodes, 2 ends its prompt
    check_columns(second)
    assert [(r.id, r.is_prefill, r.num_computed_tokens) for r in second.requests] == [(1, False, 20), (2, True, 20)]


def test_membership_and_load_match_their_getters_through_preemption_and_finishing() -> None:
    """`Batch.membership()` and `Scheduler.load()` (one call each, as the engine core reads them)
    say what the single getters say, on batches that admit, preempt and drop requests."""
    config = SchedulerConfig(token_budget=64, max_num_seqs=4, max_model_len=64, block_size=4, num_blocks=6)
    scheduler = Scheduler(config)
    for request_id in range(3):
        scheduler.add_request(request_id, prompt_len=8, max_new_tokens=2 + 3 * request_id)
    seen = {"new": 0, "preempted": 0, "finished": 0}
    for _ in range(60):
        if not len(scheduler):
            break
        batch = scheduler.schedule(0.0)
        membership = batch.membership()
        assert membership == (batch.new_request_ids, batch.preempted_ids, batch.preempted_num_tokens, batch.finished_ids)
        for kind, ids in zip(seen, (membership[0], membership[1], membership[3]), strict=True):
            seen[kind] += len(ids)
        scheduler.update(batch, np.full(batch.num_producing, 5, dtype="<u4").tobytes())
        assert scheduler.load() == (
            scheduler.num_waiting, scheduler.num_running, scheduler.num_used_blocks,
            scheduler.num_prefix_cache_queried_tokens, scheduler.num_prefix_cache_hit_tokens,
        )
    assert not len(scheduler) and scheduler.load()[:3] == (0, 0, 0)
    assert seen["new"] >= 3 and seen["preempted"] >= 1 and seen["finished"] >= 2, seen
