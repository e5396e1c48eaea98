"""How hard a simulated run drove its GPUs: model FLOP utilization (MFU) and memory-bandwidth
utilization (MBU), from the per-iteration records.

An iteration's model FLOPs are 2 per weight per token for the layers, 2 per LM-head weight per
sampled token, plus attention's FLOPs; its bytes are every weight read once plus the KV cache
read and written by attention. MFU divides the run's FLOPs by what the replicas' GPUs could do
at datasheet peak over the run's duration (`mfu`) or over the time they were busy
(`mfu_busy`); MBU likewise with bytes and peak bandwidth.
"""

import numpy as np

from vidur.simulation import SimulationResult


def iteration_work(result: SimulationResult) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) of every recorded iteration, summed over the replica's GPUs."""
    shape = result.deployment.shape
    model = shape.model
    it = result.iterations
    # In place, in the order the sums are written out, so a long run holds few arrays at once:
    # flops = 2 L P tokens + 2 E sampled + attention flops x scale.
    flops = it["num_prefill_tokens"].astype(np.float64)
    flops += it["num_decode_tokens"]
    flops *= 2.0 * model.num_layers * model.layer_params
    flops += 2.0 * model.embedding_params * it["num_sampled"]
    # Attention work is recorded per layer per GPU.
    attention_scale = model.num_layers * shape.tensor_parallel
    attention_flops = it["attention_flops"].astype(np.float64)
    attention_flops *= attention_scale
    flops += attention_flops
    del attention_flops
    bytes_moved = it["attention_bytes"].astype(np.float64)
    bytes_moved *= attention_scale
    bytes_moved += float(model.num_params * model.dtype_bytes)
    return flops, bytes_moved


def _per_replica(replica: np.ndarray, *columns: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """`columns` split by `replica`, replicas in increasing order, each in its recorded order:
    one stable sort (a radix sort of 16-bit keys) in place of a mask per replica."""
    keys = replica.astype(np.uint16) if int(replica.max()) <= np.iinfo(np.uint16).max else replica
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return list(zip(*(np.split(column[order], bounds) for column in columns)))


def utilization(result: SimulationResult) -> dict[str, float | None]:
    it = result.iterations
    if len(it["start_s"]) == 0:
        return {"mfu": None, "mfu_busy": None, "mbu": None, "mbu_busy": None, "busy_fraction": None}
    deployment = result.deployment
    gpu = deployment.shape.gpu
    flops, bytes_moved = (float(work.sum()) for work in iteration_work(result))
    num_gpus = deployment.num_gpus
    start = float(result.workload.arrival_s.min())
    duration = max(float(it["end_s"].max()) - start, 1e-12)
    # A replica is busy from a batch's start to its end; with pipeline stages batches overlap,
    # so busy time is the union of those intervals per replica.
    busy = 0.0
    for starts, ends in _per_replica(it["replica"], it["start_s"], it["end_s"]):
        running_end = np.maximum.accumulate(ends)
        gaps = np.maximum(starts[1:] - running_end[:-1], 0.0)
        busy += float(running_end[-1] - starts[0] - gaps.sum())
    replica_gpus = deployment.shape.num_gpus
    return {
        "mfu": flops / (duration * num_gpus * gpu.peak_flops),
        "mfu_busy": flops / (busy * replica_gpus * gpu.peak_flops),
        "mbu": bytes_moved / (duration * num_gpus * gpu.peak_bytes_per_s),
        "mbu_busy": bytes_moved / (busy * replica_gpus * gpu.peak_bytes_per_s),
        "busy_fraction": busy / (duration * deployment.num_replicas),
    }
