"""A simulated run's per-request records as columns: every field of the metron `RequestRecord`s
that `SimulationResult.records(deadlines)` builds, one array per field, computed from the
simulator's columns with metron's definitions, its deadline counting and the same float
operations (TTFT = first token - arrival, TPOT = (last - first) / (tokens - 1), fluidity-index =
1 - missed / total, ...), so every value is identical. `records()` builds the records themselves,
for metron's writer.

Fields that can be None in a record are NaN here (`scheduling_delay_s`, `ttft_s`, `tpot_s`,
`e2e_s`, `normalized_latency_s`, `fluidity_index`, `min_tbt_deadline_s`, `last_token_s`).

`run_columns(result, deadlines, part=(start, stop))` scores the requests `start:stop` alone (a
long run is written a part at a time: `vidur.run_in_parts`); `RunColumns.joined` puts parts'
per-request columns together without their token times.
"""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestRecord

from vidur import _simulator
from vidur.simulation import SimulationResult
from vidur.stream_deadlines import TokenStreams, count_deadlines, min_tbt_deadlines_s

OUTCOMES = ("finished", "ended_early", "error", "interrupted")
FINISHED, ENDED_EARLY, ERROR, INTERRUPTED = range(len(OUTCOMES))
NOT_FINISHED = "the simulation ended before the request finished"


@dataclass(frozen=True, slots=True)
class RunColumns:
    """Per request that arrived, in workload order. `token_times_s` holds every request's output
    token times end to end (request i's are the `num_tokens[i]` after the previous requests');
    `outcome` indexes `OUTCOMES`; `errors` says why each failed request failed.
    `scheduled_arrival_s`: when the workload wanted each sent, None where `arrival_s`;
    `cached_prompt_tokens`: -1 for None, the whole column None when the run caches no prefix.
    `token_times_s` and `streams` are None where the token times were not kept (`joined`)."""

    ids: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    requested_output_tokens: np.ndarray
    warmup: np.ndarray
    num_tokens: np.ndarray
    token_times_s: np.ndarray | None
    outcome: np.ndarray
    errors: dict[int, str]
    scheduling_delay_s: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    normalized_latency_s: np.ndarray
    missed_deadlines: np.ndarray
    total_deadlines: np.ndarray
    fluidity_index: np.ndarray
    ttft_deadline_s: np.ndarray
    tbt_deadline_s: float
    min_tbt_deadline_s: np.ndarray
    last_token_s: np.ndarray
    streams: TokenStreams | None  # `token_times_s` as the deadline counting reads them
    scheduled_arrival_s: np.ndarray | None = None
    cached_prompt_tokens: np.ndarray | None = None

    @property
    def times(self) -> np.ndarray:
        """`token_times_s`, which only columns that kept them have."""
        if self.token_times_s is None:
            raise ValueError("these columns hold no token times: the run was written a part at a time")
        return self.token_times_s

    @classmethod
    def joined(cls, parts: "list[RunColumns]") -> "RunColumns":
        """The per-request columns of consecutive parts of a run, one after another, without
        token times (`errors` indexed in the whole). `parts` is emptied as they are joined, so
        no column is held twice for longer than it takes to join it."""
        if not parts:
            raise ValueError("joining columns needs at least one part")
        first = parts[0]
        errors, offset = {}, 0
        for part in parts:
            errors |= {offset + i: error for i, error in part.errors.items()}
            offset += len(part.ids)
        pieces = {
            field.name: [getattr(part, field.name) for part in parts]
            for field in dataclasses.fields(cls)
            if isinstance(getattr(first, field.name), np.ndarray) and field.name != "token_times_s"
        }
        parts.clear()
        values: dict[str, object] = {"errors": errors, "token_times_s": None, "streams": None}
        values["tbt_deadline_s"] = first.tbt_deadline_s
        values |= {name: None for name in ("scheduled_arrival_s", "cached_prompt_tokens")}
        del first
        for name in list(pieces):
            values[name] = np.concatenate(pieces.pop(name))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def first_token(self) -> np.ndarray:
        """Where each request's tokens start in `token_times_s`."""
        return np.cumsum(self.num_tokens) - self.num_tokens

    @property
    def is_gap(self) -> np.ndarray:
        """Per entry of `token_times_s` after the first: whether it follows a token of its own
        request (so `np.diff(token_times_s)[is_gap]` are the TBTs of every request, in order)."""
        follows = np.ones(int(self.num_tokens.sum()), dtype=bool)
        follows[self.first_token[self.num_tokens > 0]] = False
        return follows[1:]

    def error_messages(self) -> list[tuple[int, str]]:
        """(request index, error) of each record that holds one, as `records()` builds them."""
        messages = dict(self.errors)
        counts, requested = self.num_tokens.tolist(), self.requested_output_tokens.tolist()
        for i in np.flatnonzero(self.outcome == ENDED_EARLY).tolist():
            messages.setdefault(i, f"ended early: {counts[i]} of {requested[i]} requested tokens")
        return sorted(messages.items())

    def write_request_files(self, jsonl_path: Path, csv_path: Path) -> None:
        """`requests.jsonl` and `requests.csv` of the records, written by the simulator extension
        with the GIL released: the CSV byte for byte metron's, every JSON value the same. The
        extension reads the arrays in place (a column already of its type is not copied)."""

        columns = self.request_file_columns()
        _simulator.write_request_files(jsonl_path, csv_path, columns, self.error_messages(), self.tbt_deadline_s)

    def request_file_columns(self) -> dict[str, np.ndarray | bytes]:
        """The columns as the simulator extension's request-file writers take them."""

        def column(values: np.ndarray, dtype: str) -> np.ndarray:
            return np.ascontiguousarray(values, dtype=dtype)

        ints = ("ids", "prompt_tokens", "requested_output_tokens", "num_tokens", "missed_deadlines", "total_deadlines")
        floats = (
            "arrival_s",
            "ttft_s",
            "tpot_s",
            "e2e_s",
            "normalized_latency_s",
            "scheduling_delay_s",
            "fluidity_index",
            "ttft_deadline_s",
            "min_tbt_deadline_s",
        )
        columns: dict[str, np.ndarray | bytes] = {name: column(getattr(self, name), "<i8") for name in ints}
        columns |= {name: column(getattr(self, name), "<f8") for name in floats}
        columns["token_times_s"] = column(self.times, "<f8")
        columns |= {name: column(getattr(self, name), "u1") for name in ("warmup", "outcome")}
        if self.scheduled_arrival_s is not None:
            columns["scheduled_arrival_s"] = column(self.scheduled_arrival_s, "<f8")
        if self.cached_prompt_tokens is not None:
            columns["cached_prompt_tokens"] = column(self.cached_prompt_tokens, "<i8")
        return columns

    def records(self) -> list[RequestRecord]:
        """metron's records of the run, exactly as `SimulationResult.records` builds them."""
        times = self.times.tolist()
        gaps = np.diff(self.times).tolist()
        starts = self.first_token.tolist()
        counts = self.num_tokens.tolist()

        def maybe(values: np.ndarray) -> list[float | None]:
            return [None if math.isnan(value) else value for value in values.tolist()]

        ttft, tpot, e2e = maybe(self.ttft_s), maybe(self.tpot_s), maybe(self.e2e_s)
        normalized, delays = maybe(self.normalized_latency_s), maybe(self.scheduling_delay_s)
        fluidity, min_deadlines = maybe(self.fluidity_index), maybe(self.min_tbt_deadline_s)
        ids, arrivals, prompts = self.ids.tolist(), self.arrival_s.tolist(), self.prompt_tokens.tolist()
        requested, warmups = self.requested_output_tokens.tolist(), self.warmup.tolist()
        missed, total = self.missed_deadlines.tolist(), self.total_deadlines.tolist()
        ttft_deadlines = self.ttft_deadline_s.tolist()
        outcomes = self.outcome.tolist()
        scheduled = arrivals if self.scheduled_arrival_s is None else self.scheduled_arrival_s.tolist()
        cached = [-1] * len(ids) if self.cached_prompt_tokens is None else self.cached_prompt_tokens.tolist()
        records = []
        for i, start in enumerate(starts):
            count, outcome = counts[i], OUTCOMES[outcomes[i]]
            error = f"ended early: {count} of {requested[i]} requested tokens" if outcome == "ended_early" else None
            records.append(
                RequestRecord(
                    id=ids[i],
                    arrival_s=arrivals[i],
                    prompt_tokens=prompts[i],
                    output_tokens=count,
                    token_times_s=times[start : start + count],
                    ttft_s=ttft[i],
                    tbt_s=gaps[start : start + count - 1] if count > 1 else [],
                    tpot_s=tpot[i],
                    e2e_s=e2e[i],
                    normalized_latency_s=normalized[i],
                    scheduling_delay_s=delays[i],
                    fluidity_index=fluidity[i],
                    missed_deadlines=missed[i],
                    total_deadlines=total[i],
                    ttft_deadline_s=ttft_deadlines[i],
                    tbt_deadline_s=self.tbt_deadline_s,
                    min_tbt_deadline_s=min_deadlines[i],
                    finished=outcome == "finished",
                    outcome=outcome,
                    error=self.errors.get(i, error),
                    requested_output_tokens=requested[i],
                    scheduled_arrival_s=scheduled[i],
                    warmup=warmups[i],
                    cached_prompt_tokens=None if cached[i] == -1 else cached[i],
                )
            )
        return records


def _received_token_times(result: SimulationResult, start: int, stop: int) -> np.ndarray:
    """The simulator leaves room for every requested token; the tokens requests `start:stop`
    received, end to end."""
    requests = result.requests
    num_tokens = requests["num_tokens"][start:stop].astype(np.int64)
    offsets = requests["token_offsets"][start : stop + 1].astype(np.int64)
    slots = result.token_slots(int(offsets[0]), int(offsets[-1]))
    if np.array_equal(num_tokens, np.diff(offsets)):
        return slots
    within = np.arange(num_tokens.sum()) - np.repeat(np.cumsum(num_tokens) - num_tokens, num_tokens)
    return slots[np.repeat(offsets[:-1] - offsets[0], num_tokens) + within]


def _ttft_deadlines(deadlines: DeadlineConfig, prompt_tokens: np.ndarray) -> np.ndarray:
    lengths, inverse = np.unique(prompt_tokens, return_inverse=True)
    return np.array([deadlines.ttft_deadline_s(length) for length in lengths.tolist()])[inverse]


def request_outcomes(result: SimulationResult, start: int, stop: int) -> tuple[np.ndarray, dict[int, str]]:
    """Requests `start:stop`'s outcomes (indexing `OUTCOMES`), and why each that failed failed
    (indexed from `start`)."""
    errors = {i - start: reason for i, reason in result.rejections.items() if start <= i < stop}
    unfinished = np.flatnonzero(result.requests["finish_reason"][start:stop] == 0)
    if not result.is_cut:
        errors |= {i: NOT_FINISHED for i in unfinished.tolist() if i not in errors}
    num_tokens = result.requests["num_tokens"][start:stop]
    outcome = np.where(num_tokens < result.workload.output_tokens[start:stop], ENDED_EARLY, FINISHED)
    outcome[unfinished] = INTERRUPTED
    outcome[list(errors)] = ERROR
    return outcome, errors


def run_columns(result: SimulationResult, deadlines: DeadlineConfig, part: tuple[int, int] | None = None) -> RunColumns:
    """The run scored against `deadlines`, as metron would score a real run of its workload
    (one stopped at `max_simulated_s` as a metron run stopped early: the requests not yet sent
    left out, those unfinished interrupted); with `part` (start, stop), only those requests."""
    start, stop = (0, result.num_arrived) if part is None else part
    if not 0 <= start <= stop <= result.num_arrived:
        raise ValueError(f"part {start}:{stop} is not within the {result.num_arrived} requests that arrived")
    workload = result.workload.part(start, stop)
    cached = result.cached_prompt_tokens()
    skipped = ("token_offsets", "token_times")
    requests = {name: values[start:stop] for name, values in result.requests.items() if name not in skipped}
    num_tokens = requests["num_tokens"].astype(np.int64)
    times = _received_token_times(result, start, stop)
    outcome, errors = request_outcomes(result, start, stop)

    first = np.cumsum(num_tokens) - num_tokens
    streaming, several = num_tokens > 0, num_tokens > 1
    first_time = np.full(len(num_tokens), np.nan)
    last_time = np.full(len(num_tokens), np.nan)
    first_time[streaming] = times[first[streaming]]
    last_time[streaming] = times[first[streaming] + num_tokens[streaming] - 1]
    tpot = np.full(len(num_tokens), np.nan)
    tpot[several] = (last_time[several] - first_time[several]) / (num_tokens[several] - 1)
    e2e = last_time - workload.arrival_s
    normalized = np.full(len(num_tokens), np.nan)
    normalized[streaming] = e2e[streaming] / num_tokens[streaming]

    ttft_deadlines = _ttft_deadlines(deadlines, workload.prompt_tokens)
    tbt = np.full(len(num_tokens), deadlines.tbt_s)
    streams = TokenStreams(times, num_tokens)
    missed, total = count_deadlines(streams, workload.arrival_s, ttft_deadlines, tbt)
    fluidity = np.full(len(num_tokens), np.nan)
    fluidity[total > 0] = 1.0 - missed[total > 0] / total[total > 0]
    return RunColumns(
        ids=workload.ids,
        arrival_s=workload.arrival_s,
        prompt_tokens=workload.prompt_tokens,
        requested_output_tokens=workload.output_tokens,
        warmup=workload.warmup,
        num_tokens=num_tokens,
        token_times_s=times,
        outcome=outcome,
        errors=errors,
        scheduling_delay_s=requests["first_scheduled_s"] - workload.arrival_s,
        ttft_s=first_time - workload.arrival_s,
        tpot_s=tpot,
        e2e_s=e2e,
        normalized_latency_s=normalized,
        missed_deadlines=missed,
        total_deadlines=total,
        fluidity_index=fluidity,
        ttft_deadline_s=ttft_deadlines,
        tbt_deadline_s=deadlines.tbt_s,
        min_tbt_deadline_s=min_tbt_deadlines_s(streams, deadlines.target_miss_rate),
        last_token_s=last_time,
        streams=streams,
        scheduled_arrival_s=workload.scheduled_arrival_s,
        cached_prompt_tokens=None if cached is None else cached[start:stop],
    )
