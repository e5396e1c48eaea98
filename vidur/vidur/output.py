"""Writing a simulated run: the shared run format (metron's own writer, so `metron` reports it
exactly as a real run) plus what only a simulator knows.

    DIR/requests.jsonl, summary.json, summary.csv, requests.csv   metron's run format
    DIR/iterations.csv      one row per iteration (batch composition, tokens, times, KV use)
    DIR/simulation.json     deployment, memory plan, predictor sources, utilization, iteration
                            statistics, simulation speed
    DIR/trace.json          Chrome/Perfetto trace of the iterations
    DIR/latencies.png, iterations.png
"""

import dataclasses
import gc
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestRecord
from metron.run_format import REQUESTS_CSV, REQUESTS_FILE, write_run_summary
from metron.slo import SloConfig, SloVerdict, evaluate_slo
from metron.summary import Metrics

from vidur.chrome_trace import write_chrome_trace
from vidur.exact_statistics import DerivedColumn, mean, percentiles, total
from vidur.run_columns import RunColumns, run_columns
from vidur.run_in_parts import PART_TOKEN_SLOTS, num_token_slots, score_in_parts
from vidur.run_summary import TokenFigures, completed_requests, gaps_of, summarize_columns
from vidur.simulation import SimulationResult
from vidur.utilization import utilization

ITERATIONS_FILE = "iterations.csv"
SIMULATION_FILE = "simulation.json"
TRACE_FILE = "trace.json"


@dataclass(frozen=True, slots=True)
class ScoredRun:
    """`simulation`: the run's `simulation_summary` where `write_simulated_run` wrote it. A run
    written in parts has columns without token times, and so no `records`."""

    columns: RunColumns
    metrics: Metrics
    verdict: SloVerdict | None
    simulation: dict[str, object] | None = None

    @property
    def records(self) -> list[RequestRecord]:
        return self.columns.records()


def score(result: SimulationResult, deadlines: DeadlineConfig, slo: SloConfig | None = None) -> ScoredRun:
    """metron's records and summary of a simulated run, and the SLO verdict when one is given,
    computed from the simulator's columns (the same values as metron's `summarize(result.records(deadlines))`).
    The verdict is metron's runner's: a run cut with requests unfinished or unsent fails."""
    return _scored(result, run_columns(result, deadlines), slo)


def _scored(
    result: SimulationResult, columns: RunColumns, slo: SloConfig | None, token_figures: TokenFigures | None = None
) -> ScoredRun:
    metrics = summarize_columns(columns, slo, token_figures)
    if slo is None:
        return ScoredRun(columns, metrics, None)
    num_planned = int(np.count_nonzero(~result.workload.warmup))
    return ScoredRun(columns, metrics, evaluate_slo(metrics, slo, num_planned=num_planned))


def iteration_statistics(result: SimulationResult) -> dict[str, float | int | None]:
    """Figures of the recorded iterations, each read a column (or a chunk) at a time, so a long
    run's records are never all in memory: numpy's figures of the whole columns, bit for bit."""
    it = result.iterations
    n = len(it["start_s"])
    if n == 0:
        return {"num_iterations": result.num_iterations}
    durations = DerivedColumn(n, lambda start, stop: it["end_s"][start:stop] - it["start_s"][start:stop])
    num_tokens = int(it["num_prefill_tokens"].sum(dtype=np.int64)) + int(it["num_decode_tokens"].sum(dtype=np.int64))
    num_blocks = result.deployment.memory.num_blocks
    return {
        "num_iterations": result.num_iterations,
        "mean_batch_size": float(it["num_seqs"].mean()),
        # numpy's mean of the tokens per iteration: float64 sums of integers below 2**53 are exact.
        "mean_tokens_per_iteration": num_tokens / n,
        "fraction_with_prefill": float((it["num_prefill_tokens"] > 0).mean()),
        "mean_iteration_s": float(mean(durations)),
        "p99_iteration_s": float(percentiles(durations, [99])[0]),
        "mean_kv_cache_used": float(it["num_blocks_used"].mean() / num_blocks),
        "max_kv_cache_used": float(it["num_blocks_used"].max() / num_blocks),
        "num_preemptions": int(it["num_preempted"].sum()),
        "attention_share_of_forward": float(it["attention_s"].sum() / max(it["forward_s"].sum(), 1e-30)),
        "communication_share_of_forward": float(it["communication_s"].sum() / max(it["forward_s"].sum(), 1e-30)),
        "cpu_share_of_iteration": float(it["cpu_s"].sum() / max(total(durations), 1e-30)),
    }


def cut_summary(result: SimulationResult) -> dict[str, object]:
    """Where a run stopped at `max_simulated_s` was cut, and what it left undone."""
    return {
        "max_simulated_seconds": result.max_simulated_s,
        "num_unfinished": result.num_unfinished,
        "num_not_arrived": len(result.workload) - result.num_arrived,
    }


def simulation_summary(result: SimulationResult) -> dict[str, object]:
    summary: dict[str, object] = {
        "deployment": result.deployment.describe(),
        "utilization": utilization(result),
        "iterations": iteration_statistics(result),
        "num_requests": len(result.workload),
        "num_rejected": len(result.rejections),
        "rejections": {str(k): v for k, v in list(result.rejections.items())[:20]},
        "simulated_end_s": result.end_s,
        "wall_s": result.wall_s,
        "iterations_per_wall_s": result.num_iterations / result.wall_s if result.wall_s > 0 else None,
    }
    if result.is_cut:
        summary["cut"] = cut_summary(result)
    return summary


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The records of a run are millions of new objects and no reference cycles; left running,
    the cyclic garbage collector walks them again and again while they are made (it took half
    the time of writing a 10,000-request run)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_simulated_run(
    result: SimulationResult,
    directory: str | Path,
    *,
    deadlines: DeadlineConfig,
    slo: SloConfig | None = None,
    workload_config: object = None,
    trace_max_iterations: int = 20_000,
    plots: bool = True,
    part_token_slots: int = PART_TOKEN_SLOTS,
) -> ScoredRun:
    """Writes the run to `directory`; the `ScoredRun` it returns holds its `simulation_summary`.
    A run of more than `part_token_slots` token slots is scored and written a part at a time
    (`vidur.run_in_parts`): the same files, its token times never all held."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _collector_paused(), ThreadPoolExecutor(max_workers=2) as writer:
        # The simulator writes iterations.csv and the request files with the GIL released, while
        # the run is scored and summarized and its other files written.
        iterations_written = writer.submit(result.output.write_iteration_csv, directory / ITERATIONS_FILE)
        files = (directory / REQUESTS_FILE, directory / REQUESTS_CSV)
        summary = simulation_summary(result)
        if num_token_slots(result) <= part_token_slots:
            columns = run_columns(result, deadlines)
            requests_written = writer.submit(columns.write_request_files, *files)
            scored = dataclasses.replace(_scored(result, columns, slo), simulation=summary)
            completed = completed_requests(columns)
            latencies = _Latencies(columns, gaps_of(columns, completed) if plots else None)
            _write_run_files(result, scored, directory, summary, deadlines, slo, workload_config, trace_max_iterations)
            requests_written.result()
        else:
            with tempfile.TemporaryDirectory(prefix=".scoring-", dir=directory) as scratch:
                parts = score_in_parts(
                    result,
                    deadlines,
                    slo,
                    jsonl_path=files[0],
                    csv_path=files[1],
                    scratch=Path(scratch),
                    writer_pool=writer,
                    part_token_slots=part_token_slots,
                )
                scored = dataclasses.replace(
                    _scored(result, parts.columns, slo, parts.token_figures), simulation=summary
                )
                latencies = _Latencies(parts.columns, np.fromfile(parts.completed_gaps) if plots else None)
            _write_run_files(result, scored, directory, summary, deadlines, slo, workload_config, trace_max_iterations)
        if plots:
            _plot(result, latencies, directory)
        iterations_written.result()
    return scored


@dataclass(frozen=True, slots=True)
class _Latencies:
    """What the latency plots draw: the columns, and every TBT of the completed requests."""

    columns: RunColumns
    completed_gaps: np.ndarray | None


def _plot(result: SimulationResult, latencies: _Latencies, directory: Path) -> None:
    from vidur.plots import plot_iterations, plot_latencies  # matplotlib takes a second to import

    columns = latencies.columns
    completed = completed_requests(columns)
    ttft, normalized = columns.ttft_s[completed], columns.normalized_latency_s[completed]
    assert latencies.completed_gaps is not None
    plot_latencies(
        ttft[~np.isnan(ttft)], latencies.completed_gaps, normalized[~np.isnan(normalized)], directory / "latencies.png"
    )
    plot_iterations(result, directory / "iterations.png")


def _write_run_files(
    result: SimulationResult,
    scored: ScoredRun,
    directory: Path,
    summary: dict[str, object],
    deadlines: DeadlineConfig,
    slo: SloConfig | None,
    workload_config: object,
    trace_max_iterations: int,
) -> None:
    """Everything but iterations.csv, the request files and the plots."""
    config: dict[str, object] = {
        "target": "vidur",
        "deployment": result.deployment.describe(),
        "workload": msgspec.to_builtins(workload_config) if workload_config is not None else None,
        "deadlines": msgspec.to_builtins(deadlines),
        "slo": msgspec.to_builtins(slo) if slo is not None else None,
    }
    if result.is_cut:  # `interrupted`: what metron's report and capacity cache read of a run stopped early
        config |= {"interrupted": True, "cut": cut_summary(result)}
    write_run_summary(directory, scored.metrics, config, scored.verdict)
    summary = dict(summary)
    summary["trace_iterations_written"] = write_chrome_trace(result, directory / TRACE_FILE, trace_max_iterations)
    (directory / SIMULATION_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
