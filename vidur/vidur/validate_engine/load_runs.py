"""Runs of a workload against the engine through metron's engine target, each with the wall-clock
window it took (to find its iterations in the engine's log)."""

import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import trio
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestRecord
from metron.runner import RunConfig, RunOutcome, measure
from metron.targets.engine import EngineTarget, EngineTargetConfig
from metron.workload import WorkloadConfig


@dataclass(frozen=True, slots=True)
class MeasuredLoad:
    outcome: RunOutcome
    """Wall-clock (time.time()) bounds of the run, and its time 0 on that clock."""
    wall_start: float
    wall_end: float
    wall_origin: float

    @property
    def records(self) -> list[RequestRecord]:
        return self.outcome.records


def run_load(
    workload: WorkloadConfig, host: str, port: int, tokenizer_path: Path | None, deadlines: DeadlineConfig
) -> MeasuredLoad:
    config = RunConfig(
        workload=workload,
        deadlines=deadlines,
        tokenizer_path=str(tokenizer_path) if tokenizer_path is not None and tokenizer_path.is_file() else None,
    )

    async def go() -> RunOutcome:
        target = EngineTarget(EngineTargetConfig(host=host, port=port))
        try:
            return await measure(config, target)
        finally:
            await target.aclose()

    wall_start = time.time()
    outcome = trio.run(go)
    wall_end = time.time()
    wall_origin = time.time() - (time.perf_counter() - outcome.load.origin_perf_counter_s)
    failed = [r for r in outcome.records if not r.completed]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed against the engine, e.g. request {failed[0].id}: "
                           f"{failed[0].error or failed[0].outcome}")
    return MeasuredLoad(outcome, wall_start, wall_end, wall_origin)


def burst(workload: WorkloadConfig) -> WorkloadConfig:
    """The same requests, all sent at once: the engine's most throughput, and its capacity."""
    return msgspec.structs.replace(workload, arrivals=ArrivalConfig(kind="static"))


def throughput_qps(load: MeasuredLoad) -> float:
    """Requests finished per second, from the first sent to the last finished."""
    records = load.records
    first = min(r.arrival_s for r in records)
    last = max(r.token_times_s[-1] for r in records if r.token_times_s)
    return len(records) / (last - first)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))
