"""What a model worker remembers about each request between steps: its token ids (prompt, then
every sampled token) and its KV block table, plus how its tokens are sampled.

State lives in arrays indexed by a row the table gives each request it knows (the scheduler's
slot maps to it), so applying a step is a handful of vectorized operations, not a loop over
requests: only new requests, prefill chunks and the tokens sampled touch Python objects.

`apply(step)` follows the order of `engine.wire.step`: finished, new, preempted, then the
entries' new blocks. It checks the whole step first and changes nothing when any part is
inconsistent, so a bad step leaves every request as it was.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepColumns, StepInput


@dataclass(slots=True)
class TrackedRequest:
    token_ids: list[int]
    sampling: SamplingParams
    num_prompt_tokens: int
    """The request's own generator when it has a seed (on the rank that samples)."""
    generator: torch.Generator | None = None
    """The first prompt position whose logprob is not yet reported (prompt_logprobs only): a
    request prefilled again after a preemption does not report its prompt twice."""
    next_prompt_logprob_position: int = 1
    """Whether the sampler must look at it (anything but plain greedy)."""
    needs_sampler: bool = field(init=False)

    def __post_init__(self) -> None:
        params = self.sampling
        plain = params.is_greedy and not (
            params.logit_bias or params.has_penalties or params.min_tokens or params.logprobs is not None
        )
        self.needs_sampler = not plain


@dataclass(frozen=True, slots=True)
class StepWork:
    """One step's entries, ready for the model: `rows` index the table's arrays."""

    columns: StepColumns
    rows: np.ndarray
    """[entries] int64: tokens each entry runs, and the context length after it."""
    query_lens: np.ndarray
    seq_lens: np.ndarray
    """[entries, blocks the longest context needs] int64."""
    block_tables: np.ndarray
    """[tokens] int64: the tokens the entries run, one after another."""
    input_ids: np.ndarray
    """Entries that sample a token."""
    producing: np.ndarray
    states: list[TrackedRequest]

    def __len__(self) -> int:
        return len(self.rows)


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
        self.max_blocks_per_request = -(-max_model_len // block_size)
        self.states: list[TrackedRequest | None] = []
        self.row_of_id: dict[int, int] = {}
        self._free_rows: list[int] = []
        self.row_of_slot = np.full(0, -1, dtype=np.int64)
        self.request_ids = np.zeros(0, dtype=np.int64)
        self.num_known_tokens = np.zeros(0, dtype=np.int64)
        self.last_token = np.zeros(0, dtype=np.int64)
        self.table_len = np.zeros(0, dtype=np.int64)
        self.block_tables = np.zeros((0, self.max_blocks_per_request), dtype=np.int64)
        self.needs_sampler = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.row_of_id)

    def state(self, request_id: int) -> TrackedRequest:
        state = self.states[self.row_of_id[request_id]]
        if state is None:
            raise KeyError(request_id)
        return state

    def block_table(self, request_id: int) -> list[int]:
        row = self.row_of_id[request_id]
        return self.block_tables[row, : self.table_len[row]].tolist()  # type: ignore[no-any-return]

    def apply(self, step: StepInput, *, takes_forwarded_tokens: bool = False) -> StepWork:
        """Validates `step`, then applies everything but the sampled tokens; returns the entries
        to run. `takes_forwarded_tokens`: this worker does not sample (a pipeline stage before
        the last), so it first appends the tokens the step forwards."""
        if takes_forwarded_tokens:
            self._append_forwarded(step)
        columns = step.columns()
        self._validate(step, columns)
        for request_id in step.finished_ids:
            self._forget(request_id)
        for new in step.new_requests:
            self._track(new, int(columns.slots[np.flatnonzero(columns.ids == new.request_id)[0]]))
        for request_id, num_tokens in zip(step.preempted_ids, step.preempted_num_tokens, strict=True):
            row = self.row_of_id[request_id]
            state = self.states[row]
            assert state is not None
            del state.token_ids[num_tokens:]
            self.num_known_tokens[row] = num_tokens
            self.last_token[row] = state.token_ids[-1]
            self.table_len[row] = 0
        rows = self.row_of_slot[columns.slots]
        counts = np.diff(columns.new_block_offsets).astype(np.int64)
        if columns.new_block_ids.size:
            owners = np.repeat(rows, counts)
            within = np.arange(owners.size) - np.repeat(columns.new_block_offsets[:-1].astype(np.int64), counts)
            self.block_tables[owners, self.table_len[owners] + within] = columns.new_block_ids
            self.table_len[rows] += counts
        return self._work(columns, rows)

    def record_sampled(self, work: StepWork, tokens: list[int]) -> None:
        """Appends each producing entry's sampled token to its request."""
        rows = work.rows[work.producing]
        for state, token in zip((work.states[i] for i in work.producing), tokens, strict=True):
            state.token_ids.append(token)
        self.num_known_tokens[rows] += 1
        self.last_token[rows] = tokens

    def _append_forwarded(self, step: StepInput) -> None:
        ids = np.frombuffer(step.forwarded_ids, dtype="<u8").astype(np.int64)
        slots = np.frombuffer(step.forwarded_slots, dtype="<u4").astype(np.int64)
        tokens = np.frombuffer(step.forwarded_token_ids, dtype="<u4").astype(np.int64)
        if not (len(ids) == len(slots) == len(tokens)):
            raise ValueError(f"step {step.step_id}: its forwarded columns have different lengths")
        known = slots < len(self.row_of_slot)
        rows = np.full(len(slots), -1, dtype=np.int64)
        rows[known] = self.row_of_slot[slots[known]]
        live = rows >= 0
        live[live] &= self.request_ids[rows[live]] == ids[live]  # finished ones are gone
        rows, tokens = rows[live], tokens[live]
        for row, token in zip(rows.tolist(), tokens.tolist(), strict=True):
            state = self.states[row]
            assert state is not None
            state.token_ids.append(token)
        self.num_known_tokens[rows] += 1
        self.last_token[rows] = tokens

    # ----- building the model's inputs -----

    def _work(self, columns: StepColumns, rows: np.ndarray) -> StepWork:
        start = columns.num_computed_tokens.astype(np.int64)
        query_lens = columns.num_tokens.astype(np.int64)
        seq_lens = start + query_lens
        width = max(1, int(-(-seq_lens.max(initial=0) // self.block_size)))
        block_tables = self.block_tables[rows, :width]
        states = [self.states[row] for row in rows.tolist()]
        offsets = np.concatenate(([0], np.cumsum(query_lens)))
        input_ids = np.empty(int(offsets[-1]), dtype=np.int64)
        # One-token entries at a request's last known token (every decode) read it from the
        # array; the rest (prefill chunks) slice the request's token list.
        last = (query_lens == 1) & (seq_lens == self.num_known_tokens[rows])
        input_ids[offsets[:-1][last]] = self.last_token[rows[last]]
        for index in np.flatnonzero(~last).tolist():
            state = states[index]
            assert state is not None
            input_ids[offsets[index] : offsets[index + 1]] = state.token_ids[start[index] : seq_lens[index]]
        producing = np.flatnonzero(columns.produces_token)
        return StepWork(
            columns, rows, query_lens, seq_lens, block_tables, input_ids, producing, states
        )

    # ----- state changes -----

    def _track(self, new: NewRequest, slot: int) -> None:
        seed = new.sampling.seed
        generator = self.new_generator(seed) if self.new_generator is not None and seed is not None else None
        state = TrackedRequest(list(new.prompt_token_ids), new.sampling, len(new.prompt_token_ids), generator=generator)
        if self._free_rows:
            row = self._free_rows.pop()
            self.states[row] = state
        else:
            row = len(self.states)
            self.states.append(state)
            self._grow_rows(row + 1)
        if slot >= len(self.row_of_slot):
            grown = np.full(max(2 * len(self.row_of_slot), slot + 1), -1, dtype=np.int64)
            grown[: len(self.row_of_slot)] = self.row_of_slot
            self.row_of_slot = grown
        self.row_of_slot[slot] = row
        self.row_of_id[new.request_id] = row
        self.request_ids[row] = new.request_id
        self.num_known_tokens[row] = len(state.token_ids)
        self.last_token[row] = state.token_ids[-1]
        self.table_len[row] = 0
        self.needs_sampler[row] = state.needs_sampler

    def _forget(self, request_id: int) -> None:
        row = self.row_of_id.pop(request_id)
        self.states[row] = None
        self.request_ids[row] = -1
        self._free_rows.append(row)

    def _grow_rows(self, needed: int) -> None:
        capacity = len(self.request_ids)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 16)

        def grown(array: np.ndarray, fill: int | bool) -> np.ndarray:
            bigger = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
            bigger[: len(array)] = array
            return bigger

        self.request_ids = grown(self.request_ids, -1)
        self.num_known_tokens = grown(self.num_known_tokens, 0)
        self.last_token = grown(self.last_token, 0)
        self.table_len = grown(self.table_len, 0)
        self.block_tables = grown(self.block_tables, 0)
        self.needs_sampler = grown(self.needs_sampler, False)

    # ----- checks (all before any change) -----

    def _validate(self, step: StepInput, columns: StepColumns) -> None:
        where = f"step {step.step_id}"
        known = set(self.row_of_id)
        _check_unique(f"{where}: finished_ids", step.finished_ids)
        unknown = [i for i in step.finished_ids if i not in known]
        if unknown:
            raise ValueError(f"{where}: finished request {unknown[0]} is unknown")
        known.difference_update(step.finished_ids)
        new_ids = {new.request_id for new in step.new_requests}
        if len(new_ids) != len(step.new_requests) or new_ids & known:
            raise ValueError(f"{where}: a new request is already known or listed twice")
        flagged_new = set(columns.ids[(columns.flags & 4) != 0].tolist())
        if flagged_new != new_ids:
            raise ValueError(f"{where}: new_requests do not match the entries flagged new")
        for new in step.new_requests:
            self._validate_new(where, new)
        if len(step.preempted_ids) != len(step.preempted_num_tokens):
            raise ValueError(f"{where}: preempted_ids and preempted_num_tokens differ in length")
        _check_unique(f"{where}: preempted_ids", step.preempted_ids)
        for request_id, num_tokens in zip(step.preempted_ids, step.preempted_num_tokens, strict=True):
            if request_id not in known:
                raise ValueError(f"{where}: preempted request {request_id} is unknown")
            row = self.row_of_id[request_id]
            if not 1 <= num_tokens <= self.num_known_tokens[row]:
                raise ValueError(f"{where}: preempted request {request_id} keeps {num_tokens} tokens")
        self._validate_entries(where, step, columns, known, new_ids)

    def _validate_entries(
        self, where: str, step: StepInput, columns: StepColumns, known: set[int], new_ids: set[int]
    ) -> None:
        n = len(columns.ids)
        sizes = {len(columns.slots), len(columns.num_tokens), len(columns.num_computed_tokens), len(columns.flags)}
        if sizes != {n} or len(columns.new_block_offsets) != n + 1:
            raise ValueError(f"{where}: its columns have different lengths")
        if n == 0:
            return
        offsets = columns.new_block_offsets.astype(np.int64)
        if offsets[0] != 0 or offsets[-1] != len(columns.new_block_ids) or np.any(np.diff(offsets) < 0):
            raise ValueError(f"{where}: new_block_offsets do not partition new_block_ids")
        if len(np.unique(columns.ids)) != n or len(np.unique(columns.slots)) != n:
            raise ValueError(f"{where}: a request or slot appears twice")
        ids = columns.ids.astype(np.int64)
        new_slots = {int(s) for i, s in zip(ids.tolist(), columns.slots.tolist(), strict=True) if i in new_ids}
        # Rows as they will be once new requests are tracked and finished ones forgotten.
        rows = np.full(n, -1, dtype=np.int64)
        in_range = columns.slots < len(self.row_of_slot)
        rows[in_range] = self.row_of_slot[columns.slots[in_range]]
        is_new = np.isin(ids, list(new_ids)) if new_ids else np.zeros(n, dtype=bool)
        old = ~is_new
        if np.any(rows[old] < 0) or np.any(self.request_ids[rows[old]] != ids[old]):
            bad = ids[old][(rows[old] < 0) | (self.request_ids[rows[old]] != ids[old])][0]
            raise ValueError(f"{where}: entry of unknown request {bad} (or in another slot)")
        finished_rows = {self.row_of_id[i] for i in step.finished_ids}
        if finished_rows & set(rows[old].tolist()) or not new_slots.isdisjoint(
            int(s) for s, o in zip(columns.slots.tolist(), old.tolist(), strict=True) if o
        ):
            raise ValueError(f"{where}: an entry's request is finished in the same step")
        num_known = np.zeros(n, dtype=np.int64)
        table_len = np.zeros(n, dtype=np.int64)
        num_known[old] = self.num_known_tokens[rows[old]]
        table_len[old] = self.table_len[rows[old]]
        lengths = {new.request_id: len(new.prompt_token_ids) for new in step.new_requests}
        num_known[is_new] = [lengths[i] for i in ids[is_new].tolist()]
        for request_id, num_tokens in zip(step.preempted_ids, step.preempted_num_tokens, strict=True):
            hit = np.flatnonzero(ids == request_id)
            num_known[hit], table_len[hit] = num_tokens, 0
        start = columns.num_computed_tokens.astype(np.int64)
        count = columns.num_tokens.astype(np.int64)
        end = start + count
        blocks = table_len + np.diff(offsets)
        problems = [
            (count < 1, "runs no tokens"),
            (end > num_known, "runs past the tokens it has"),
            (columns.produces_token & (end != num_known), "samples a token before its last one"),
            (end > self.max_model_len, f"reaches past max_model_len ({self.max_model_len})"),
            (blocks * self.block_size < end, "writes past the blocks of its table"),
            (blocks > self.max_blocks_per_request, "has more blocks than max_model_len needs"),
        ]
        for mask, what in problems:
            if np.any(mask):
                index = int(np.flatnonzero(mask)[0])
                raise ValueError(
                    f"{where}: request {ids[index]} (tokens {start[index]}..{end[index]}, holding "
                    f"{num_known[index]} tokens and {blocks[index]} blocks) {what}"
                )
        if columns.new_block_ids.size and (columns.new_block_ids.max() >= self.num_blocks):
            raise ValueError(
                f"{where}: block {int(columns.new_block_ids.max())} is outside the KV cache (0..{self.num_blocks - 1})"
            )

    def _validate_new(self, where: str, new: NewRequest) -> None:
        prompt = new.prompt_token_ids
        if not prompt:
            raise ValueError(f"{where}: new request {new.request_id} has an empty prompt")
        if len(prompt) > self.max_model_len:
            raise ValueError(
                f"{where}: new request {new.request_id} has {len(prompt)} prompt tokens, "
                f"more than max_model_len ({self.max_model_len})"
            )
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            bad = next(t for t in prompt if not 0 <= t < self.vocab_size)
            raise ValueError(
                f"{where}: new request {new.request_id} has token id {bad} outside the vocabulary "
                f"(size {self.vocab_size})"
            )
        try:
            new.sampling.validate(self.vocab_size)
        except ValueError as error:
            raise ValueError(f"{where}: new request {new.request_id}: {error}") from None


def _check_unique(what: str, ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{what} lists request {duplicate} twice")
