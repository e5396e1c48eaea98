"""Per-request metrics from plain data: when a request was sent and when each output token arrived.

A real run (metron's load generator) and a simulated one (vidur) both call `request_record`, so
both produce the same records, written to `requests.jsonl` as they are:

    from metron.deadlines import DeadlineConfig
    from metron.metrics import RequestTimes, request_records

    measured = [RequestTimes(id=7, arrival_s=12.0, prompt_tokens=900, token_times_s=[12.4, 12.43, 12.46],
                             requested_output_tokens=3, scheduling_delay_s=0.05), ...]
    records = request_records(measured, DeadlineConfig(tbt_s=0.1, ttft_s=2.0))

All times are seconds on one clock, measured from the start of the run.
"""

import itertools
from collections.abc import Sequence

import msgspec
import numpy as np

from metron.deadlines import DeadlineConfig
from metron.fluidity import MAX_ABS_TIME_S, count_deadlines_many, min_tbt_deadlines


class RequestTimes(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What was measured of one request, as plain data. `token_times_s` are the absolute arrival
    times of its output tokens, one entry per token (a time repeats for tokens that came in one
    event). `error` marks a failed request and `interrupted` one cut off by stopping the run;
    otherwise a request with fewer tokens than `requested_output_tokens` ended early.
    `prompt_tokens` is the server's count where the target reports it, else the workload's
    (`requested_prompt_tokens`).
    `scheduling_delay_s` (queueing before its first iteration), `server_token_times_s` (the
    server's own clock, one per token) and `cached_prompt_tokens` (prompt tokens the server's
    prefix cache held) are None where the target does not say."""

    id: int
    arrival_s: float
    prompt_tokens: int
    token_times_s: list[float]
    requested_output_tokens: int | None = None
    requested_prompt_tokens: int | None = None
    scheduling_delay_s: float | None = None
    error: str | None = None
    interrupted: bool = False
    scheduled_arrival_s: float | None = None
    warmup: bool = False
    server_token_times_s: list[float] | None = None
    cached_prompt_tokens: int | None = None

    def validate(self) -> None:
        times = self.token_times_s
        if not np.isfinite(self.arrival_s):
            raise ValueError(f"request {self.id}: arrival_s must be a finite time, got {self.arrival_s}")
        for name, values in (("token_times_s", times), ("server_token_times_s", self.server_token_times_s or [])):
            bad = [t for t in values if not abs(t) <= MAX_ABS_TIME_S]
            if bad:
                raise ValueError(f"request {self.id}: {name} must be finite times, got {bad[0]}")
        if any(later < earlier for earlier, later in itertools.pairwise(times)):
            raise ValueError(f"request {self.id}: token times must not decrease")
        if times and times[0] < self.arrival_s:
            raise ValueError(
                f"request {self.id}: its first token ({times[0]} s) came before it was sent ({self.arrival_s} s)"
            )
        if self.prompt_tokens < 0:
            raise ValueError(f"request {self.id}: prompt_tokens must not be negative, got {self.prompt_tokens}")
        if self.server_token_times_s is not None and len(self.server_token_times_s) != len(times):
            raise ValueError(f"request {self.id}: server_token_times_s needs one entry per token ({len(times)})")

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.error is not None:
            return "error"
        if self.requested_output_tokens is not None and len(self.token_times_s) < self.requested_output_tokens:
            return "ended_early"
        return "finished"


class RequestRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One line of `requests.jsonl`.

    `outcome`: `finished` (every requested token arrived), `ended_early` (the stream closed cleanly
    with fewer tokens than requested: the server stopped at EOS or a limit), `error` (with
    `error`), or `interrupted` (the run was stopped while it streamed). `finished` is
    `outcome == "finished"`. Latency fields are None where no token arrived (and TPOT where only
    one did); `tbt_s` holds the gaps between consecutive tokens (0 for tokens that arrived in the
    same streamed event). `arrival_s` is when the request was sent; `scheduled_arrival_s` when the
    workload wanted it sent. `cached_prompt_tokens`: the prompt tokens the server's prefix cache
    held, where the server says (None otherwise); it comes last, after the fields vidur's request
    file writer knows."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    token_times_s: list[float]
    ttft_s: float | None
    tbt_s: list[float]
    tpot_s: float | None
    e2e_s: float | None
    normalized_latency_s: float | None
    scheduling_delay_s: float | None
    fluidity_index: float | None
    missed_deadlines: int
    total_deadlines: int
    ttft_deadline_s: float
    tbt_deadline_s: float
    min_tbt_deadline_s: float | None
    finished: bool
    outcome: str
    error: str | None = None
    requested_output_tokens: int | None = None
    requested_prompt_tokens: int | None = None
    scheduled_arrival_s: float | None = None
    warmup: bool = False
    server_token_times_s: list[float] | None = None
    cached_prompt_tokens: int | None = None

    @property
    def miss_rate(self) -> float | None:
        return None if self.fluidity_index is None else 1.0 - self.fluidity_index

    @property
    def completed(self) -> bool:
        """The stream closed normally (finished or ended early): its latencies count."""
        return self.outcome in ("finished", "ended_early")


def request_records(measured: Sequence[RequestTimes], deadlines: DeadlineConfig) -> list[RequestRecord]:
    """Every per-request metric of each measured request, scored against `deadlines`."""
    for request in measured:
        request.validate()
    ttft_deadlines = [deadlines.ttft_deadline_s(request.prompt_tokens) for request in measured]
    missed, total = count_deadlines_many(
        [request.arrival_s for request in measured],
        [request.token_times_s for request in measured],
        ttft_deadlines,
        [deadlines.tbt_s] * len(measured),
    )
    min_deadlines = min_tbt_deadlines([request.token_times_s for request in measured], deadlines.target_miss_rate)
    return [
        _record(request, ttft_deadlines[i], deadlines.tbt_s, int(missed[i]), int(total[i]), min_deadlines[i])
        for i, request in enumerate(measured)
    ]


def request_record(measured: RequestTimes, deadlines: DeadlineConfig) -> RequestRecord:
    return request_records([measured], deadlines)[0]


def _early_end_reason(request: RequestTimes, num_tokens: int) -> str:
    """DESIGN.md's run format: a record that is not `finished` says why in `error`."""
    return f"ended early: {num_tokens} of {request.requested_output_tokens} requested tokens"


def _record(
    request: RequestTimes,
    ttft_deadline: float,
    tbt_deadline: float,
    missed: int,
    total: int,
    min_deadline: float | None,
) -> RequestRecord:
    times = [float(t) for t in request.token_times_s]
    num_tokens = len(times)
    arrival = float(request.arrival_s)
    e2e = times[-1] - arrival if times else None
    outcome = request.outcome
    return RequestRecord(
        id=request.id,
        arrival_s=arrival,
        prompt_tokens=request.prompt_tokens,
        output_tokens=num_tokens,
        token_times_s=times,
        ttft_s=times[0] - arrival if times else None,
        tbt_s=[later - earlier for earlier, later in itertools.pairwise(times)],
        tpot_s=(times[-1] - times[0]) / (num_tokens - 1) if num_tokens > 1 else None,
        e2e_s=e2e,
        normalized_latency_s=e2e / num_tokens if e2e is not None else None,
        scheduling_delay_s=request.scheduling_delay_s,
        fluidity_index=1.0 - missed / total if total else None,
        missed_deadlines=missed,
        total_deadlines=total,
        ttft_deadline_s=ttft_deadline,
        tbt_deadline_s=tbt_deadline,
        min_tbt_deadline_s=min_deadline,
        finished=outcome == "finished",
        outcome=outcome,
        error=_early_end_reason(request, num_tokens) if outcome == "ended_early" else request.error,
        requested_output_tokens=request.requested_output_tokens,
        requested_prompt_tokens=request.requested_prompt_tokens,
        scheduled_arrival_s=arrival if request.scheduled_arrival_s is None else request.scheduled_arrival_s,
        warmup=request.warmup,
        server_token_times_s=request.server_token_times_s,
        cached_prompt_tokens=request.cached_prompt_tokens,
    )


def measured_times(record: RequestRecord) -> RequestTimes:
    """What was measured of a request, recovered from its record."""
    return RequestTimes(
        id=record.id,
        arrival_s=record.arrival_s,
        prompt_tokens=record.prompt_tokens,
        token_times_s=record.token_times_s,
        requested_output_tokens=record.requested_output_tokens,
        requested_prompt_tokens=record.requested_prompt_tokens,
        scheduling_delay_s=record.scheduling_delay_s,
        error=record.error,
        interrupted=record.outcome == "interrupted",
        scheduled_arrival_s=record.scheduled_arrival_s,
        warmup=record.warmup,
        server_token_times_s=record.server_token_times_s,
        cached_prompt_tokens=record.cached_prompt_tokens,
    )


def rescore(records: Sequence[RequestRecord], deadlines: DeadlineConfig) -> list[RequestRecord]:
    """The same requests scored against other deadlines (their measured times are kept)."""
    return request_records([measured_times(record) for record in records], deadlines)
