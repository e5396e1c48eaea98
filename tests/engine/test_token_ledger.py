"""The engine core's per-slot record of sampled tokens (`TokenLedger`, Rust), which also hands
each step's tokens to the scheduler, against hand-worked steps of real scheduler batches."""

import numpy as np
import pytest

from engine.scheduler import Batch, RecordedTokens, Scheduler, SchedulerConfig, TokenLedger

EOS = 2
VOCAB = 10


def make_scheduler(token_budget: int = 64) -> Scheduler:
    config = SchedulerConfig(token_budget=token_budget, max_num_seqs=8, max_model_len=64, block_size=16, num_blocks=32)
    return Scheduler(config)


def next_batch(scheduler: Scheduler, ledger: TokenLedger, arrivals: dict[int, float], **sampling: dict) -> Batch:
    """Schedules a batch and takes a ledger slot for each request it holds first (as the engine
    does); `sampling[f"r{id}"]`: that request's `take` keywords."""
    batch = scheduler.schedule(0.0)
    for slot, request_id in zip(batch.new_request_slots, batch.new_request_ids, strict=True):
        ledger.take(slot, request_id, arrivals[request_id], **sampling.get(f"r{request_id}", {}))
    return batch


def apply(
    scheduler: Scheduler, ledger: TokenLedger, batch: Batch, tokens: list[int], now: float, dropped: set[int] = set()
) -> RecordedTokens:
    return ledger.apply(scheduler, batch, np.array(tokens, dtype="<u4").tobytes(), now, dropped)


def column(data: bytes, dtype: str) -> list:
    return np.frombuffer(data, dtype=dtype).tolist()


def test_first_tokens_then_gaps_and_eos() -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(10, prompt_len=2, max_new_tokens=8)
    scheduler.add_request(11, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {10: 1.0, 11: 1.5}, r11={"ignore_eos": True})
    first = apply(scheduler, ledger, batch, [7, 8], now=2.0)
    assert column(first.ttfts, "<f8") == [1.0, 0.5] and column(first.tbts, "<f8") == []
    assert first.stopped_ids == [] and first.num_tokens == 2
    assert column(first.ids, "<u8") == [10, 11] and column(first.token_ids, "<u4") == [7, 8]
    batch = next_batch(scheduler, ledger, {})
    second = apply(scheduler, ledger, batch, [EOS, EOS], now=2.25)
    assert column(second.ttfts, "<f8") == [] and column(second.tbts, "<f8") == [0.25, 0.25]
    assert second.stopped_ids == [10]  # 11 ignores EOS
    slot_of = dict(zip(column(batch.ids, "<u8"), column(batch.slots, "<u4"), strict=True))
    assert ledger.token_times(slot_of[10], 10) == (2, 2.0, 2.25)
    assert ledger.token_times(slot_of[11], 11) == (2, 2.0, 2.25)
    assert ledger.token_times(slot_of[11], 10) is None  # not its slot


def test_a_mix_of_first_and_later_tokens_in_one_step() -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0})
    apply(scheduler, ledger, batch, [4], now=1.0)
    scheduler.add_request(2, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {2: 0.5})
    mixed = apply(scheduler, ledger, batch, [4, 4], now=1.5)
    assert column(mixed.ttfts, "<f8") == [1.0] and column(mixed.tbts, "<f8") == [0.5]


def test_tokens_of_requests_gone_or_preempted_are_left_out() -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    for request_id in (1, 2, 3):
        scheduler.add_request(request_id, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0, 2: 0.0, 3: 0.0})
    slots = column(batch.slots, "<u4")
    assert ledger.release(slots[0], 1) and not ledger.release(slots[0], 1)
    out = apply(scheduler, ledger, batch, [EOS, EOS, 4], now=1.0, dropped={2})
    assert column(out.ids, "<u8") == [3] and column(out.token_ids, "<u4") == [4]
    assert column(out.positions, "<u4") == [2] and out.num_tokens == 1
    assert out.stopped_ids == []
    assert ledger.token_times(slots[1], 2) == (0, pytest.approx(np.nan, nan_ok=True), pytest.approx(np.nan, nan_ok=True))


def test_a_reused_slot_does_not_take_the_old_requests_token() -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0})
    (slot,) = column(batch.slots, "<u4")
    ledger.release(slot, 1)
    ledger.take(slot, 2, 0.0)  # a batch scheduled before the slot changed hands
    out = apply(scheduler, ledger, batch, [4], now=1.0)
    assert out.num_tokens == 0 and column(out.ids, "<u8") == []
    assert ledger.token_times(slot, 2) == (0, pytest.approx(np.nan, nan_ok=True), pytest.approx(np.nan, nan_ok=True))


def test_entries_that_sample_nothing_are_skipped() -> None:
    """A prompt chunk short of the prompt's end samples no token: the sampled column has one
    token per producing entry, and positions index those."""
    scheduler, ledger = make_scheduler(token_budget=8), TokenLedger([EOS], VOCAB)
    scheduler.add_request(2, prompt_len=2, max_new_tokens=8)
    scheduler.add_request(1, prompt_len=20, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0, 2: 0.0})
    assert column(batch.ids, "<u8") == [2, 1] and batch.num_producing == 1
    out = apply(scheduler, ledger, batch, [EOS], now=1.0)
    assert column(out.ids, "<u8") == [2] and column(out.positions, "<u4") == [0] and out.num_tokens == 1
    assert out.stopped_ids == [2]


@pytest.mark.parametrize("stop_kind", ["eos", "stop_token_ids"])
def test_min_tokens_holds_stops_back(stop_kind: str) -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    stop_token = EOS if stop_kind == "eos" else 9
    extra = {"stop_token_ids": [9]} if stop_kind == "stop_token_ids" else {}
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    scheduler.add_request(2, prompt_len=2, max_new_tokens=8)  # no min_tokens: EOS stops it at once
    batch = next_batch(scheduler, ledger, {1: 0.0, 2: 0.0}, r1={"min_tokens": 2, **extra})
    assert apply(scheduler, ledger, batch, [stop_token, EOS], now=1.0).stopped_ids == [2]
    batch = next_batch(scheduler, ledger, {})
    assert apply(scheduler, ledger, batch, [stop_token], now=2.0).stopped_ids == [1]


def test_stop_token_ids_stop_only_their_request() -> None:
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    scheduler.add_request(2, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0, 2: 0.0}, r1={"stop_token_ids": [7]})
    assert apply(scheduler, ledger, batch, [7, 7], now=1.0).stopped_ids == [1]


def test_bad_inputs_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="EOS token 12 is outside the vocabulary of 10"):
        TokenLedger([12], VOCAB)
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0})
    with pytest.raises(ValueError, match="8 bytes of sampled tokens for a batch of 1 producing entries"):
        apply(scheduler, ledger, batch, [4, 4], now=1.0)
    with pytest.raises(ValueError, match="sampled token 10 of request 1 is outside the vocabulary of 10"):
        apply(scheduler, ledger, batch, [10], now=1.0)
    assert ledger.token_times(column(batch.slots, "<u4")[0], 1)[0] == 0  # nothing was recorded
    assert scheduler.request_state(1).num_output_tokens == 0  # nor handed to the scheduler
    assert apply(scheduler, ledger, batch, [4], now=1.0).num_tokens == 1


def test_the_scheduler_hears_the_step_and_what_it_stopped() -> None:
    """`apply` updates the scheduler in the same call: a request its token stopped leaves with
    "stop", one at its `max_new_tokens` with "length", and the others keep running."""
    scheduler, ledger = make_scheduler(), TokenLedger([EOS], VOCAB)
    scheduler.add_request(1, prompt_len=2, max_new_tokens=8)
    scheduler.add_request(2, prompt_len=2, max_new_tokens=1)
    scheduler.add_request(3, prompt_len=2, max_new_tokens=8)
    batch = next_batch(scheduler, ledger, {1: 0.0, 2: 0.0, 3: 0.0})
    out = apply(scheduler, ledger, batch, [EOS, 4, 4], now=1.0)
    assert sorted((f.id, f.reason, f.num_output_tokens) for f in out.finished) == [(1, "stop", 1), (2, "length", 1)]
    assert 1 not in scheduler and 2 not in scheduler and scheduler.request_state(3).num_output_tokens == 1
    assert scheduler.running_ids() == [3]
