"""How hard a simulated run drove its GPUs: model FLOP utilization (MFU) and memory-bandwidth
utilization (MBU), from the per-iteration records.

An iteration's model FLOPs are 2 per weight per token for the layers, 2 per LM-head weight per
sampled token, plus attention's FLOPs; its bytes are every weight read once plus the KV cache
read and written by attention. MFU divides the run's FLOPs by what the replicas' GPUs could do
at datasheet peak over the run's duration (`mfu`) or over the time they were busy
(`mfu_busy`); MBU likewise with bytes and peak bandwidth.
"""

import numpy as np

from vidur.exact_statistics import DerivedColumn, total
from vidur.simulation import SimulationResult


_CHUNK = 1 << 20  # iterations read at once: a long run's columns are never all in memory


def iteration_flops(result: SimulationResult, start: int, stop: int) -> np.ndarray:
    """The FLOPs of recorded iterations `start:stop`, summed over the replica's GPUs."""
    shape = result.deployment.shape
    model = shape.model
    it = result.iterations
    # flops = 2 L P tokens + 2 E sampled + attention flops x scale, in this order.
    flops = it["num_prefill_tokens"][start:stop].astype(np.float64)
    flops += it["num_decode_tokens"][start:stop]
    flops *= 2.0 * model.num_layers * model.layer_params
    flops += 2.0 * model.embedding_params * it["num_sampled"][start:stop]
    # Attention work is recorded per layer per GPU.
    attention_flops = it["attention_flops"][start:stop].astype(np.float64)
    attention_flops *= model.num_layers * shape.tensor_parallel
    flops += attention_flops
    return flops


def iteration_bytes(result: SimulationResult, start: int, stop: int) -> np.ndarray:
    """The bytes moved by recorded iterations `start:stop` (every weight read once plus
    attention's), summed over the replica's GPUs."""
    shape = result.deployment.shape
    model = shape.model
    bytes_moved = result.iterations["attention_bytes"][start:stop].astype(np.float64)
    bytes_moved *= model.num_layers * shape.tensor_parallel
    bytes_moved += float(model.num_params * model.dtype_bytes)
    return bytes_moved


def busy_s(result: SimulationResult) -> float:
    """The replicas' busy time: each is busy from a batch's start to its end; with pipeline
    stages batches overlap, so per replica it is the union of those intervals. Read a chunk of
    iterations at a time, each replica's running end carried over; the gaps between intervals are
    summed per replica over all of them, as numpy sums one array of them."""
    it = result.iterations
    n = len(it["start_s"])
    first_start: dict[int, float] = {}
    running_end: dict[int, float] = {}
    gaps: dict[int, list[np.ndarray]] = {}
    for chunk_start in range(0, n, _CHUNK):
        chunk = slice(chunk_start, min(chunk_start + _CHUNK, n))
        replicas, starts, ends = it["replica"][chunk], it["start_s"][chunk], it["end_s"][chunk]
        for replica, rows in _rows_per_replica(replicas):
            replica_starts, replica_ends = starts[rows], ends[rows]
            if replica in running_end:
                replica_ends = np.concatenate([[running_end[replica]], replica_ends])
                replica_starts = np.concatenate([[np.nan], replica_starts])
            else:
                first_start[replica] = float(replica_starts[0])
                gaps[replica] = []
            ends_so_far = np.maximum.accumulate(replica_ends)
            gaps[replica].append(np.maximum(replica_starts[1:] - ends_so_far[:-1], 0.0))
            running_end[replica] = float(ends_so_far[-1])
    busy = 0.0
    for replica in sorted(running_end):
        busy += float(running_end[replica] - first_start[replica] - np.concatenate(gaps[replica]).sum())
    return busy


def _rows_per_replica(replicas: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(replica, its rows in order) for each replica in `replicas`, in increasing order: one
    stable sort (a radix sort of 16-bit keys) in place of a mask per replica."""
    keys = replicas.astype(np.uint16) if int(replicas.max()) <= np.iinfo(np.uint16).max else replicas
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return [(int(keys[rows[0]]), rows) for rows in np.split(order, bounds)]


def utilization(result: SimulationResult) -> dict[str, float | None]:
    it = result.iterations
    n = len(it["start_s"])
    if n == 0:
        return {"mfu": None, "mfu_busy": None, "mbu": None, "mbu_busy": None, "busy_fraction": None}
    deployment = result.deployment
    gpu = deployment.shape.gpu
    flops = float(total(DerivedColumn(n, lambda start, stop: iteration_flops(result, start, stop))))
    bytes_moved = float(total(DerivedColumn(n, lambda start, stop: iteration_bytes(result, start, stop))))
    num_gpus = deployment.num_gpus
    start = float(result.workload.arrival_s.min())
    duration = max(float(it["end_s"].max()) - start, 1e-12)
    busy = busy_s(result)
    replica_gpus = deployment.shape.num_gpus
    return {
        "mfu": flops / (duration * num_gpus * gpu.peak_flops),
        "mfu_busy": flops / (busy * replica_gpus * gpu.peak_flops),
        "mbu": bytes_moved / (duration * num_gpus * gpu.peak_bytes_per_s),
        "mbu_busy": bytes_moved / (busy * replica_gpus * gpu.peak_bytes_per_s),
        "busy_fraction": busy / (duration * deployment.num_replicas),
    }
