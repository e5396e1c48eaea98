"""The simulated twin of a running engine: the deployment its iteration log's header describes
(its model, its device's profile, its scheduler's resolved config, its exact number of KV
blocks), with the host overheads fitted from its log."""

from pathlib import Path
from typing import Any

from vidur.cost_model import CpuOverheadConfig
from vidur.deployment import DeploymentConfig, ReplicaConfig, ReplicaSchedulerConfig


def engine_scheduler_knobs(scheduler: dict[str, Any]) -> ReplicaSchedulerConfig:
    """The simulator's knobs for the scheduler config the engine logged (every field set, so no
    default can differ)."""
    chunking = scheduler.get("dynamic_chunking")
    return ReplicaSchedulerConfig(
        policy=scheduler["policy"],
        token_budget=scheduler["token_budget"],
        max_num_seqs=scheduler["max_num_seqs"],
        max_model_len=scheduler["max_model_len"],
        block_size=scheduler["block_size"],
        watermark=scheduler["watermark"],
        enable_prefix_caching=scheduler["enable_prefix_caching"],
        order=scheduler["order"],
        dynamic_chunking=tuple(chunking) if chunking is not None else None,  # type: ignore[arg-type]
        max_decode_iters_between_prefills=scheduler["max_decode_iters_between_prefills"],
        async_scheduling=scheduler["async_scheduling"],
    )


def engine_deployment_config(header: Any, device_folder: Path, overheads: CpuOverheadConfig) -> DeploymentConfig:
    """`header`: the engine's `IterationLogHeader`; `device_folder`: its device's profile folder."""
    replica = ReplicaConfig(
        model=header.model,
        gpu=str(device_folder),
        tensor_parallel=header.tensor_parallel_size,
        pipeline_parallel=header.pipeline_parallel_size,
        memory_utilization=1.0,
        num_kv_blocks=header.num_kv_blocks,
    )
    return DeploymentConfig(replica=replica, scheduler=engine_scheduler_knobs(header.scheduler), cpu_overheads=overheads)
