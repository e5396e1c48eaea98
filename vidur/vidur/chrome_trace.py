"""A Chrome / Perfetto trace of a simulated run: one process per replica, one track per pipeline
slot, a slice per iteration (its batch in the slice's arguments), and counters for the KV cache
and the queues. Open it at https://ui.perfetto.dev or chrome://tracing."""

import json
from pathlib import Path

import numpy as np

from vidur.simulation import SimulationResult


def trace_events(result: SimulationResult, max_iterations: int) -> list[dict[str, object]]:
    it = result.iterations
    count = min(len(it["start_s"]), max_iterations)
    num_stages = result.deployment.shape.pipeline_parallel
    num_blocks = result.deployment.memory.num_blocks
    events: list[dict[str, object]] = []
    for replica in range(result.deployment.num_replicas):
        events.append({"ph": "M", "name": "process_name", "pid": replica, "args": {"name": f"replica {replica}"}})
    last_slot_end: dict[tuple[int, int], float] = {}
    for index in range(count):
        replica = int(it["replica"][index])
        start, end = float(it["start_s"][index]), float(it["end_s"][index])
        # Overlapping batches of a pipeline go on separate tracks.
        slot = next(
            (s for s in range(num_stages) if last_slot_end.get((replica, s), -np.inf) <= start),
            num_stages - 1,
        )
        last_slot_end[(replica, slot)] = end
        prefill, decode = int(it["num_prefill_tokens"][index]), int(it["num_decode_tokens"][index])
        events.append(
            {
                "ph": "X",
                "name": f"prefill {prefill} + decode {decode}" if prefill else f"decode {decode}",
                "pid": replica,
                "tid": slot,
                "ts": start * 1e6,
                "dur": (end - start) * 1e6,
                "args": {
                    "num_seqs": int(it["num_seqs"][index]),
                    "prefill_tokens": prefill,
                    "decode_tokens": decode,
                    "forward_ms": float(it["forward_s"][index]) * 1e3,
                    "attention_ms": float(it["attention_s"][index]) * 1e3,
                    "communication_ms": float(it["communication_s"][index]) * 1e3,
                    "cpu_ms": float(it["cpu_s"][index]) * 1e3,
                    "preempted": int(it["num_preempted"][index]),
                },
            }
        )
        events.append(
            {
                "ph": "C",
                "name": "state",
                "pid": replica,
                "ts": start * 1e6,
                "args": {
                    "kv_cache_used": float(it["num_blocks_used"][index]) / num_blocks,
                    "waiting": int(it["num_waiting"][index]),
                    "running": int(it["num_running"][index]),
                },
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
    path.write_text(json.dumps(document))
    return written
