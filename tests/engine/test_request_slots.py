"""The engine core's per-slot bookkeeping of sampled tokens, against hand-worked steps."""

import numpy as np
import pytest

from engine.core.request_slots import EngineRequest, RequestSlots
from engine.wire.sampling_params import SamplingParams

EOS = 2


def request(request_id: int, arrival: float, **sampling: object) -> EngineRequest:
    return EngineRequest(request_id, [5, 6], SamplingParams(**sampling), arrival)  # type: ignore[arg-type]


def step(slots: RequestSlots, entries: list[tuple[int, int, int]], now: float, dropped: set[int] = frozenset()):
    """`entries`: (slot, request id, token) in batch order, as the engine reads them from a batch."""
    slot_column = np.array([e[0] for e in entries], dtype="<u4")
    ids = np.array([e[1] for e in entries], dtype="<u8")
    tokens = np.array([e[2] for e in entries], dtype="<u4")
    return slots.produced(slot_column, ids, tokens, now, set(dropped))


def test_first_tokens_then_gaps_and_eos() -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    a, b = request(10, arrival=1.0), request(11, arrival=1.5, ignore_eos=True)
    slots.take(0, a)
    slots.take(3, b)
    first = step(slots, [(0, 10, 7), (3, 11, 8)], now=2.0)
    assert first.ttfts.tolist() == [1.0, 0.5] and first.tbts.tolist() == [] and first.stopped_ids == []
    second = step(slots, [(0, 10, EOS), (3, 11, EOS)], now=2.25)
    assert second.ttfts.tolist() == [] and second.tbts.tolist() == [0.25, 0.25]
    assert second.stopped_ids == [10]  # b ignores EOS
    assert slots.num_output[[0, 3]].tolist() == [2, 2]
    assert slots.first_token_time[[0, 3]].tolist() == [2.0, 2.0]


def test_a_mix_of_first_and_later_tokens_in_one_step() -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    slots.take(0, request(1, arrival=0.0))
    step(slots, [(0, 1, 4)], now=1.0)
    slots.take(1, request(2, arrival=0.5))
    mixed = step(slots, [(0, 1, 4), (1, 2, 4)], now=1.5)
    assert mixed.ttfts.tolist() == [1.0] and mixed.tbts.tolist() == [0.5]


def test_tokens_of_requests_gone_or_preempted_are_left_out() -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    gone, preempted, kept = request(1, 0.0), request(2, 0.0), request(3, 0.0)
    for slot, r in enumerate((gone, preempted, kept)):
        slots.take(slot, r)
    slots.release(gone)
    out = step(slots, [(0, 1, EOS), (1, 2, EOS), (2, 3, 4)], now=1.0, dropped={2})
    assert out.ids.tolist() == [3] and out.tokens.tolist() == [4] and out.positions.tolist() == [2]
    assert out.stopped_ids == []
    assert slots.num_output[1] == 0  # the preempted request's token was not counted


def test_a_reused_slot_does_not_take_the_old_requests_token() -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    old, new = request(1, 0.0), request(2, 0.0)
    slots.take(0, old)
    slots.release(old)
    slots.take(0, new)
    out = step(slots, [(0, 1, 4)], now=1.0)  # a batch scheduled before the slot changed hands
    assert out.ids.tolist() == [] and slots.num_output[0] == 0


@pytest.mark.parametrize("stop_kind", ["eos", "stop_token_ids"])
def test_min_tokens_holds_stops_back(stop_kind: str) -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    stop_token = EOS if stop_kind == "eos" else 9
    extra = {"stop_token_ids": [9]} if stop_kind == "stop_token_ids" else {}
    slots.take(0, request(1, 0.0, min_tokens=2, **extra))
    slots.take(1, request(2, 0.0))  # no min_tokens: EOS stops it at once
    first = step(slots, [(0, 1, stop_token), (1, 2, EOS)], now=1.0)
    assert first.stopped_ids == [2]
    slots.release(slots.requests[1])  # type: ignore[arg-type]
    assert step(slots, [(0, 1, stop_token)], now=2.0).stopped_ids == [1]


def test_stop_token_ids_stop_only_their_request() -> None:
    slots = RequestSlots([EOS], vocab_size=10)
    slots.take(0, request(1, 0.0, stop_token_ids=[7]))
    slots.take(1, request(2, 0.0))
    assert step(slots, [(0, 1, 7), (1, 2, 7)], now=1.0).stopped_ids == [1]
