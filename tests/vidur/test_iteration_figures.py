"""The iteration figures of simulation.json (`iteration_statistics`, `utilization`), read a
column or a chunk of iterations at a time, are numpy's figures of the whole columns bit for bit:
checked against those figures computed here the plain way, on runs with several replicas and
pipeline stages (whose batches overlap), with chunks of a few iterations, records held or
streamed to disk."""

from pathlib import Path

import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.lengths import LengthConfig
from metron.workload import WorkloadConfig

import vidur.utilization
from vidur import ClusterConfig, DeploymentConfig, OperatorPredictor, Simulator, Workload, plan_deployment
from vidur.deployment import ReplicaConfig
from vidur.output import iteration_statistics
from vidur.simulation import SimulationResult
from vidur.utilization import utilization


def plain_statistics(result: SimulationResult) -> dict[str, float | int]:
    it = {name: np.array(values) for name, values in result.iterations.items()}
    tokens = it["num_prefill_tokens"].astype(np.int64) + it["num_decode_tokens"]
    duration = it["end_s"] - it["start_s"]
    blocks = result.deployment.memory.num_blocks
    return {
        "num_iterations": result.num_iterations,
        "mean_batch_size": float(it["num_seqs"].mean()),
        "mean_tokens_per_iteration": float(tokens.mean()),
        "fraction_with_prefill": float((it["num_prefill_tokens"] > 0).mean()),
        "mean_iteration_s": float(duration.mean()),
        "p99_iteration_s": float(np.percentile(duration, 99)),
        "mean_kv_cache_used": float(it["num_blocks_used"].mean() / blocks),
        "max_kv_cache_used": float(it["num_blocks_used"].max() / blocks),
        "num_preemptions": int(it["num_preempted"].sum()),
        "attention_share_of_forward": float(it["attention_s"].sum() / max(it["forward_s"].sum(), 1e-30)),
        "communication_share_of_forward": float(it["communication_s"].sum() / max(it["forward_s"].sum(), 1e-30)),
        "cpu_share_of_iteration": float(it["cpu_s"].sum() / max(duration.sum(), 1e-30)),
    }


def plain_utilization(result: SimulationResult) -> dict[str, float]:
    it = {name: np.array(values) for name, values in result.iterations.items()}
    deployment = result.deployment
    model, gpu = deployment.shape.model, deployment.shape.gpu
    flops = it["num_prefill_tokens"].astype(np.float64)
    flops += it["num_decode_tokens"]
    flops *= 2.0 * model.num_layers * model.layer_params
    flops += 2.0 * model.embedding_params * it["num_sampled"]
    scale = model.num_layers * deployment.shape.tensor_parallel
    attention_flops = it["attention_flops"].astype(np.float64)
    attention_flops *= scale
    flops += attention_flops
    bytes_moved = it["attention_bytes"].astype(np.float64)
    bytes_moved *= scale
    bytes_moved += float(model.num_params * model.dtype_bytes)
    busy = 0.0
    for replica in np.unique(it["replica"]).tolist():
        mine = it["replica"] == replica
        starts, ends = it["start_s"][mine], it["end_s"][mine]
        running_end = np.maximum.accumulate(ends)
        gaps = np.maximum(starts[1:] - running_end[:-1], 0.0)
        busy += float(running_end[-1] - starts[0] - gaps.sum())
    duration = max(float(it["end_s"].max()) - float(result.workload.arrival_s.min()), 1e-12)
    total_flops, total_bytes = float(flops.sum()), float(bytes_moved.sum())
    num_gpus, replica_gpus = deployment.num_gpus, deployment.shape.num_gpus
    return {
        "mfu": total_flops / (duration * num_gpus * gpu.peak_flops),
        "mfu_busy": total_flops / (busy * replica_gpus * gpu.peak_flops),
        "mbu": total_bytes / (duration * num_gpus * gpu.peak_bytes_per_s),
        "mbu_busy": total_bytes / (busy * replica_gpus * gpu.peak_bytes_per_s),
        "busy_fraction": busy / (duration * deployment.num_replicas),
    }


@pytest.mark.parametrize("pipeline_parallel", [1, 2])
def test_iteration_figures_are_numpys_of_the_whole_columns(
    predictor: OperatorPredictor, pipeline_parallel: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = ReplicaConfig(pipeline_parallel=pipeline_parallel)
    deployment = DeploymentConfig(replica=replica, cluster=ClusterConfig(num_replicas=3, router="random"))
    simulator = Simulator(plan_deployment(deployment, predictor))
    # Short requests, often apart: the replicas idle between batches many times.
    lengths = LengthConfig(kind="uniform", prompt_tokens=100, output_tokens=6)
    workload = Workload.generated(WorkloadConfig(num_requests=600, arrivals=ArrivalConfig(rate=20.0), lengths=lengths))
    for result in (simulator.run(workload), simulator.run(workload, spill_directory=tmp_path / "spill")):
        expected = (plain_statistics(result), plain_utilization(result))
        assert 0.1 < expected[1]["busy_fraction"] < 0.9  # busy, with idle gaps
        for chunk in (7, 1 << 20):
            monkeypatch.setattr(vidur.utilization, "_CHUNK", chunk)
            assert (iteration_statistics(result), utilization(result)) == expected, chunk
