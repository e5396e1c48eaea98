"""The engine's per-request state in arrays indexed by the scheduler's slot, so that one engine
iteration handles a batch's sampled tokens with a few vectorized operations: which entries are
still live, first-token latencies and gaps, EOS and `min_tokens`. Only the hand-off of each
token to its stream is a loop (a list append per token).

A request gets a slot row when a batch first holds it (the scheduler chose the slot) and gives
it back when it leaves the engine.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.wire.sampling_params import SamplingParams

# `request_id` of a free slot: no request has it.
FREE = np.iinfo(np.uint64).max
_NO_TIMES = np.zeros(0)
_ALL = np.True_
_NONE = np.False_


@dataclass(slots=True)
class EngineRequest:
    request_id: int
    prompt_token_ids: list[int]
    sampling: SamplingParams
    """Wall-clock time (time.time()) of its arrival."""
    arrival_time: float
    """Its scheduler slot once a batch has held it."""
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class ProducedTokens:
    """One batch's sampled tokens of requests still live, in batch order."""

    slots: np.ndarray
    ids: np.ndarray
    tokens: np.ndarray
    """Indices (into the batch's producing entries) of these tokens."""
    positions: np.ndarray
    ttfts: np.ndarray
    tbts: np.ndarray
    """Requests whose token ends them (EOS or a stop token, at or past min_tokens)."""
    stopped_ids: list[int]
    """Every entry given was live: `ids` and `tokens` are the columns given, in full."""
    all_live: bool


class RequestSlots:
    def __init__(self, eos_token_ids: Sequence[int], vocab_size: int):
        self._is_eos = np.zeros(vocab_size, dtype=bool)
        self._is_eos[list(eos_token_ids)] = True
        self.requests: list[EngineRequest | None] = []
        self.request_id = np.zeros(0, dtype=np.uint64)
        self.arrival = np.zeros(0)
        self.last_token_time = np.zeros(0)
        self.first_token_time = np.zeros(0)
        self.num_output = np.zeros(0, dtype=np.int64)
        self.min_tokens = np.zeros(0, dtype=np.int64)
        self.stops_at_eos = np.zeros(0, dtype=bool)
        self.has_stop_ids = np.zeros(0, dtype=bool)
        # Requests holding a slot with a `min_tokens` or with stop token ids (most have neither).
        self._num_with_min_tokens = 0
        self._num_with_stop_ids = 0

    def take(self, slot: int, request: EngineRequest) -> None:
        """`request` holds `slot` from now on (its first batch, or its first after a preemption)."""
        self.release(request)
        self._grow(slot + 1)
        request.slot = slot
        self.requests[slot] = request
        self.request_id[slot] = request.request_id
        self.arrival[slot] = request.arrival_time
        self.last_token_time[slot] = np.nan
        self.first_token_time[slot] = np.nan
        self.num_output[slot] = 0
        self.min_tokens[slot] = request.sampling.min_tokens
        self.stops_at_eos[slot] = not request.sampling.ignore_eos
        self.has_stop_ids[slot] = bool(request.sampling.stop_token_ids)
        self._num_with_min_tokens += request.sampling.min_tokens > 0
        self._num_with_stop_ids += bool(request.sampling.stop_token_ids)

    def release(self, request: EngineRequest) -> None:
        if request.slot is not None and self.requests[request.slot] is request:
            self.requests[request.slot] = None
            self.request_id[request.slot] = FREE
            self._num_with_min_tokens -= request.sampling.min_tokens > 0
            self._num_with_stop_ids -= bool(request.sampling.stop_token_ids)
        request.slot = None

    def produced(
        self, slots: np.ndarray, ids: np.ndarray, tokens: np.ndarray, now: float, dropped: set[int]
    ) -> ProducedTokens:
        """Records one batch's sampled tokens (`slots`, `ids`: of its producing entries, in
        order); tokens of requests gone since the batch was scheduled, or in `dropped` (preempted
        while it ran), are left out. The common cases (every entry live, no first token, no
        `min_tokens`, no stop token ids) skip the work they do not need."""
        live = self.request_id[slots] == ids
        if dropped:
            live &= ~np.isin(ids, list(dropped))
        all_live = bool(live.all())
        if all_live:
            positions = np.arange(len(ids))
        else:
            positions = np.flatnonzero(live)
            slots, ids, tokens = slots[positions], ids[positions], tokens[positions]
        previous = self.last_token_time[slots]
        first = np.isnan(previous)
        self.last_token_time[slots] = now
        if first.any():
            first_slots = slots[first]
            ttfts = now - self.arrival[first_slots]
            self.first_token_time[first_slots] = now
            tbts = now - previous[~first]
        else:
            ttfts, tbts = _NO_TIMES, now - previous
        num_output = self.num_output[slots] + 1
        self.num_output[slots] = num_output
        may_stop = num_output >= self.min_tokens[slots] if self._num_with_min_tokens else _ALL
        eos = self._is_eos[tokens]
        if eos.any():
            stopping = may_stop & self.stops_at_eos[slots] & eos
            stopped = ids[stopping].tolist()
        else:
            stopping, stopped = _NONE, []
        if self._num_with_stop_ids:
            for index in np.flatnonzero(may_stop & ~stopping & self.has_stop_ids[slots]).tolist():
                request = self.requests[int(slots[index])]
                if request is not None and int(tokens[index]) in request.sampling.stop_token_ids:
                    stopped.append(int(ids[index]))
        return ProducedTokens(slots, ids, tokens, positions, ttfts, tbts, stopped, all_live)

    def _grow(self, needed: int) -> None:
        capacity = len(self.requests)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 64)
        self.requests.extend([None] * (capacity - len(self.requests)))

        def grown(array: np.ndarray, fill: float | int | bool) -> np.ndarray:
            bigger = np.full(capacity, fill, dtype=array.dtype)
            bigger[: len(array)] = array
            return bigger

        self.request_id = grown(self.request_id, FREE)
        self.arrival = grown(self.arrival, 0.0)
        self.last_token_time = grown(self.last_token_time, np.nan)
        self.first_token_time = grown(self.first_token_time, np.nan)
        self.num_output = grown(self.num_output, 0)
        self.min_tokens = grown(self.min_tokens, 0)
        self.stops_at_eos = grown(self.stops_at_eos, False)
        self.has_stop_ids = grown(self.has_stop_ids, False)
