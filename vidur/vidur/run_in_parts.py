"""A long simulated run scored, and its request files written, a part of its requests at a time
(consecutive requests, in workload order, of at most `part_token_slots` token slots together),
so its token times are never all in memory: each part's records are appended to
`requests.jsonl` and `requests.csv` as it is scored, and what the summary reads of the token
times goes to a scratch file (every TBT, from which `vidur.exact_statistics` computes metron's
figures exactly) or is kept only in part (of the decode miss-rate table, the values at and above
each deadline's P99). What is held for the whole run is a few columns per request. The files
and the summary are byte for byte those of the run scored whole (`run_columns`,
`summarize_columns`)."""

import dataclasses
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np
from metron.deadlines import DeadlineConfig
from metron.slo import SloConfig
from metron.summary import MISS_RATE_CURVE_DEADLINES_S

from vidur import _simulator
from vidur.exact_statistics import FilesColumn, describe
from vidur.largest_values import LargestValues, values_to_keep
from vidur.run_columns import ENDED_EARLY, FINISHED, RunColumns, request_outcomes, run_columns
from vidur.run_summary import (
    TokenFigures,
    completed_requests,
    curve_streams,
    gaps_of,
    interrupted_requests,
    own_tbt,
)
from vidur.simulation import SimulationResult
from vidur.stream_deadlines import decode_miss_rate_table

PART_TOKEN_SLOTS = 1 << 21  # 16 MB of token times
CURVE_PERCENTILE = 99.0  # metron's miss-rate curve: each deadline's P99 miss rate


def num_token_slots(result: SimulationResult) -> int:
    """The token-time slots of the requests that arrived (each request's requested tokens)."""
    return int(result.requests["token_offsets"][result.num_arrived])


def part_bounds(result: SimulationResult, part_token_slots: int) -> list[tuple[int, int]]:
    """(start, stop) of each part: consecutive requests with at most `part_token_slots` slots
    together, or one request alone that has more."""
    if part_token_slots < 1:
        raise ValueError(f"a part needs at least one token slot, got {part_token_slots}")
    offsets = result.requests["token_offsets"][: result.num_arrived + 1].astype(np.int64)
    bounds, start = [], 0
    while start < result.num_arrived:
        fits = int(np.searchsorted(offsets, offsets[start] + part_token_slots, side="right")) - 1
        stop = min(max(fits, start + 1), result.num_arrived)
        bounds.append((start, stop))
        start = stop
    return bounds


def num_curve_streams(result: SimulationResult) -> int:
    """The requests the miss-rate curve counts: measured, completed, two tokens or more."""
    n = result.num_arrived
    outcome, _ = request_outcomes(result, 0, n)
    completed = ~result.workload.warmup[:n] & np.isin(outcome, (FINISHED, ENDED_EARLY))
    return int(np.count_nonzero(completed & (result.requests["num_tokens"][:n] > 1)))


@dataclasses.dataclass(frozen=True, slots=True)
class ScoredInParts:
    """`columns`: the run's per-request columns without token times; `completed_gaps`: the
    file of the completed requests' TBTs (for the latency plots)."""

    columns: RunColumns
    token_figures: TokenFigures
    completed_gaps: Path


def score_in_parts(
    result: SimulationResult,
    deadlines: DeadlineConfig,
    slo: SloConfig | None,
    *,
    jsonl_path: Path,
    csv_path: Path,
    scratch: Path,
    writer_pool: Executor,
    part_token_slots: int = PART_TOKEN_SLOTS,
) -> ScoredInParts:
    """Scores the run part by part into `scratch` (a directory that must outlive the result),
    writing each part's records on `writer_pool` while the next is scored."""
    gap_files = (scratch / "completed_gaps.bin", scratch / "interrupted_gaps.bin")
    num_streams = num_curve_streams(result)
    miss_rates = LargestValues(values_to_keep(num_streams, CURVE_PERCENTILE))
    writer = _simulator.RequestFilesWriter(jsonl_path, csv_path)
    parts: list[RunColumns] = []
    own: list[np.ndarray] = []
    written: Future[None] | None = None
    needs_own_tbt = slo is not None and slo.kind == "tbt_ttft"
    with open(gap_files[0], "wb") as completed_out, open(gap_files[1], "wb") as interrupted_out:
        for bounds in part_bounds(result, part_token_slots):
            columns = run_columns(result, deadlines, bounds)
            if written is not None:
                written.result()  # parts are written in order, one held while the next is scored
            written = writer_pool.submit(
                writer.write, columns.request_file_columns(), columns.error_messages(), columns.tbt_deadline_s
            )
            completed = completed_requests(columns)
            _append(completed_out, gaps_of(columns, completed))
            _append(interrupted_out, gaps_of(columns, interrupted_requests(columns)))
            streams = curve_streams(columns, completed)
            if len(streams):
                assert columns.streams is not None  # a part holds its token times
                miss_rates.add(decode_miss_rate_table(columns.streams.subset(streams), MISS_RATE_CURVE_DEADLINES_S))
            if needs_own_tbt:
                assert slo is not None
                own.append(own_tbt(columns, completed, slo.tbt_percentile))
            parts.append(dataclasses.replace(columns, token_times_s=None, streams=None))
        if written is not None:
            written.result()
    writer.close()
    tbt = describe("tbt_s", FilesColumn(gap_files), slo.percentiles_of("tbt_s") if slo is not None else ())
    if miss_rates.num_added != num_streams:
        raise AssertionError(f"the parts gave {miss_rates.num_added} curve streams' miss rates, not {num_streams}")
    curve = miss_rates.percentile(num_streams, CURVE_PERCENTILE) if num_streams else None
    figures = TokenFigures(tbt=tbt, miss_rate_curve=curve, own_tbt=np.concatenate(own) if needs_own_tbt else None)
    return ScoredInParts(RunColumns.joined(parts), figures, gap_files[0])


def _append(out: object, values: np.ndarray) -> None:
    np.ascontiguousarray(values, dtype="<f8").tofile(out)  # type: ignore[arg-type]
