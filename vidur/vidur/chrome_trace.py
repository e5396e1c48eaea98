"""A Chrome / Perfetto trace of a simulated run: one process per replica, one track per pipeline
slot, a slice per iteration (its batch in the slice's arguments), and counters for the KV cache
and the queues. Open it at https://ui.perfetto.dev or chrome://tracing."""

from pathlib import Path

import msgspec
import numpy as np

from vidur.simulation import SimulationResult


def _slots(replica: list[int], start: list[float], end: list[float], num_stages: int) -> list[int]:
    """Each iteration's track: the first pipeline slot of its replica that is free at its start
    (overlapping batches of a pipeline go on separate tracks)."""
    if num_stages == 1:
        return [0] * len(start)
    last_slot_end: dict[tuple[int, int], float] = {}
    slots = []
    for replica_id, begin, finish in zip(replica, start, end, strict=True):
        slot = next(
            (s for s in range(num_stages) if last_slot_end.get((replica_id, s), -np.inf) <= begin),
            num_stages - 1,
        )
        last_slot_end[(replica_id, slot)] = finish
        slots.append(slot)
    return slots


_SLICE_COLUMNS = (
    "replica",
    "start_s",
    "end_s",
    "num_prefill_tokens",
    "num_decode_tokens",
    "num_seqs",
    "forward_s",
    "attention_s",
    "communication_s",
    "cpu_s",
    "num_preempted",
    "num_blocks_used",
    "num_waiting",
    "num_running",
)


def trace_events(result: SimulationResult, max_iterations: int) -> list[dict[str, object]]:
    count = min(len(result.iterations["start_s"]), max_iterations)
    it = {name: result.iterations[name][:count].tolist() for name in _SLICE_COLUMNS}
    num_blocks = result.deployment.memory.num_blocks
    events: list[dict[str, object]] = []
    for replica in range(result.deployment.num_replicas):
        events.append({"ph": "M", "name": "process_name", "pid": replica, "args": {"name": f"replica {replica}"}})
    slots = _slots(it["replica"], it["start_s"], it["end_s"], result.deployment.shape.pipeline_parallel)
    for slot, *row in zip(slots, *(it[name] for name in _SLICE_COLUMNS), strict=True):
        replica, start, end, prefill, decode, seqs, forward, attention, communication, cpu, *rest = row
        preempted, blocks, waiting, running = rest
        events.append(
            {
                "ph": "X",
                "name": f"prefill {prefill} + decode {decode}" if prefill else f"decode {decode}",
                "pid": replica,
                "tid": slot,
                "ts": start * 1e6,
                "dur": (end - start) * 1e6,
                "args": {
                    "num_seqs": seqs,
                    "prefill_tokens": prefill,
                    "decode_tokens": decode,
                    "forward_ms": forward * 1e3,
                    "attention_ms": attention * 1e3,
                    "communication_ms": communication * 1e3,
                    "cpu_ms": cpu * 1e3,
                    "preempted": preempted,
                },
            }
        )
        events.append(
            {
                "ph": "C",
                "name": "state",
                "pid": replica,
                "ts": start * 1e6,
                "args": {"kv_cache_used": blocks / num_blocks, "waiting": waiting, "running": running},
            }
        )
    return events


def write_chrome_trace(result: SimulationResult, path: Path, max_iterations: int = 20_000) -> int:
    """Writes the first `max_iterations` iterations; returns how many it wrote."""
    events = trace_events(result, max_iterations)
    written = sum(1 for e in events if e["ph"] == "X")
    document = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"iterations_written": written, "iterations_total": len(result.iterations["start_s"])},
    }
    path.write_bytes(msgspec.json.encode(document))
    return written
