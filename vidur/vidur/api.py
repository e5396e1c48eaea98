"""The Python API in a few calls: train the predictor, plan a deployment, generate its
workload, simulate, score and write the run.

    predictor = train_predictor([data_dir / "profiling"])
    config = load_config("deployment.toml", ["replica.gpu=a100"])
    simulator = Simulator(plan_deployment(config.deployment, predictor))
    result = simulator.run(workload_for(config.workload, simulator.deployment))
    write_simulated_run(result, "runs/a100", deadlines=deadlines_for(config, simulator))
"""

import msgspec
import numpy as np
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.prefill_model import PrefillModel, fit_prefill_model
from metron.workload import WorkloadConfig

from vidur.config import VidurConfig
from vidur.deployment import Deployment
from vidur.errors import DeploymentError
from vidur.predictor import OperatorPredictor
from vidur.simulation import Simulator, Workload

train_predictor = OperatorPredictor.train


def workload_config_for(config: WorkloadConfig, deployment: Deployment) -> WorkloadConfig:
    """The workload as it runs on `deployment`: requests longer than its context are clipped by
    the lengths' `clip` rule (by default the output is kept and the prompt shortened, as Vidur
    does), unless the workload sets its own `max_total_tokens`."""
    if config.lengths.max_total_tokens is not None:
        return config
    lengths: LengthConfig = msgspec.structs.replace(config.lengths, max_total_tokens=deployment.max_model_len)
    return msgspec.structs.replace(config, lengths=lengths)


def workload_for(config: WorkloadConfig, deployment: Deployment) -> Workload:
    """The workload's requests on `deployment` (`workload_config_for`)."""
    return Workload.generated(workload_config_for(config, deployment))


def simulated_prefill_model(simulator: Simulator, num_lengths: int = 12) -> PrefillModel:
    """What `metron profile-prefill` would fit against this deployment: TTFT of single requests
    on an idle replica at prompt lengths from 16 (or less, for a short context) up to the longest
    prompt the context leaves room for (one token for the output), fitted by metron."""
    max_len = simulator.deployment.max_model_len - 1
    if max_len < 1:
        raise DeploymentError(f"max_model_len {simulator.deployment.max_model_len} leaves no room for a prompt")
    lowest = min(16, max(max_len - 1, 1))
    lengths = np.unique(np.clip(np.geomspace(lowest, max_len, num_lengths).astype(np.int64), lowest, max_len))
    spacing = 1000.0
    workload = Workload(
        ids=np.arange(len(lengths)),
        arrival_s=np.arange(len(lengths)) * spacing,
        prompt_tokens=lengths,
        output_tokens=np.ones(len(lengths), dtype=np.int64),
        warmup=np.zeros(len(lengths), dtype=bool),
    )
    result = simulator.run(workload, record_iterations=False)
    if result.rejections:
        reason = next(iter(result.rejections.values()))
        raise DeploymentError(f"the replica refused a single {lengths.max()}-token prompt: {reason}")
    ttft = np.array([result.token_times(i)[0] - workload.arrival_s[i] for i in range(len(lengths))])
    if len(lengths) == 1:  # the only prompt length there is: its TTFT, exactly
        return PrefillModel(intercept_s=float(ttft[0]), per_token_s=0.0, per_token_squared_s=0.0)
    return fit_prefill_model(lengths.tolist(), ttft.tolist())


def deadlines_for(config: VidurConfig, simulator: Simulator) -> DeadlineConfig:
    if not config.simulated_prefill_deadline:
        return config.deadlines
    return msgspec.structs.replace(config.deadlines, prefill=simulated_prefill_model(simulator))
