"""Vidur: simulate LLM serving deployments on the shared Rust scheduler, and search for the
cheapest one that meets an SLO.

    from vidur import (DeploymentConfig, ReplicaConfig, Simulator, plan_deployment, train_predictor,
                       workload_for, write_simulated_run)
"""

from vidur._simulator import (
    InvalidCostModelError,
    InvalidDeploymentError,
    InvalidWorkloadError,
    SchedulerConfigError,
    SimulatorError,
)
from vidur.api import deadlines_for, simulated_prefill_model, train_predictor, workload_config_for, workload_for
from vidur.config import VidurConfig, load_config
from vidur.cost_model import CpuOverheadConfig
from vidur.deployment import (
    ClusterConfig,
    Deployment,
    DeploymentConfig,
    ReplicaConfig,
    ReplicaSchedulerConfig,
    plan_deployment,
)
from vidur.errors import (
    ContextTooLongError,
    DeploymentError,
    MissingProfileError,
    ModelConfigError,
    ModelDoesNotFitError,
    ParallelismError,
    UnknownGpuError,
    UnknownModelError,
)
from vidur.gpus import GpuSpec, get_gpu
from vidur.models import ModelSpec, get_model
from vidur.output import score, write_simulated_run
from vidur.predictor import OperatorPredictor
from vidur.predictor_cache import cached_predictor
from vidur.simulation import SimulationResult, Simulator, Workload

__all__ = [
    "ClusterConfig",
    "ContextTooLongError",
    "CpuOverheadConfig",
    "Deployment",
    "DeploymentConfig",
    "DeploymentError",
    "GpuSpec",
    "InvalidCostModelError",
    "InvalidDeploymentError",
    "InvalidWorkloadError",
    "MissingProfileError",
    "ModelConfigError",
    "ModelDoesNotFitError",
    "ModelSpec",
    "OperatorPredictor",
    "ParallelismError",
    "ReplicaConfig",
    "ReplicaSchedulerConfig",
    "SchedulerConfigError",
    "SimulationResult",
    "Simulator",
    "SimulatorError",
    "UnknownGpuError",
    "UnknownModelError",
    "VidurConfig",
    "Workload",
    "cached_predictor",
    "deadlines_for",
    "get_gpu",
    "get_model",
    "load_config",
    "plan_deployment",
    "score",
    "simulated_prefill_model",
    "train_predictor",
    "workload_config_for",
    "workload_for",
    "write_simulated_run",
]
