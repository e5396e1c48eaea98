"""Deployments that cannot exist, and malformed inputs, fail with a specific error that says why."""

from pathlib import Path

import numpy as np
import pytest

from vidur import (
    DeploymentConfig,
    DeploymentError,
    InvalidCostModelError,
    InvalidDeploymentError,
    InvalidWorkloadError,
    ModelDoesNotFitError,
    OperatorPredictor,
    ParallelismError,
    ReplicaConfig,
    ReplicaSchedulerConfig,
    SchedulerConfigError,
    Simulator,
    UnknownGpuError,
    UnknownModelError,
    Workload,
    get_model,
    load_config,
    plan_deployment,
)
from vidur import _simulator
from vidur.cli import main


def plan(predictor: OperatorPredictor, **replica: object) -> object:
    return plan_deployment(DeploymentConfig(replica=ReplicaConfig(**replica)), predictor)  # type: ignore[arg-type]


def test_tensor_parallel_that_does_not_divide_the_heads(predictor: OperatorPredictor) -> None:
    with pytest.raises(
        ParallelismError, match="tensor_parallel=3 does not divide meta-llama/Llama-2-7b-hf's 32 attention heads"
    ):
        plan(predictor, tensor_parallel=3)
    with pytest.raises(ParallelismError, match="pipeline_parallel=3 does not divide .* 32 layers"):
        plan(predictor, pipeline_parallel=3)


def test_a_model_that_does_not_fit(predictor: OperatorPredictor) -> None:
    with pytest.raises(
        ModelDoesNotFitError,
        match=r"Llama-2-70b-hf does not fit on a100 at TP=1, PP=1: each GPU needs 128\.\d GiB of weights",
    ):
        plan(predictor, model="llama-2-70b", gpu="a100")
    # Weights fit on two GPUs but leave too little room for one full-length request.
    with pytest.raises(ModelDoesNotFitError, match="fewer than one request of max_model_len"):
        plan(predictor, model="llama-2-70b", gpu="a100", tensor_parallel=2, memory_utilization=0.81)


def test_a_model_folder_without_config_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=f"{tmp_path} has no config.json"):
        get_model(str(tmp_path))


def test_unknown_gpu_and_model(predictor: OperatorPredictor) -> None:
    with pytest.raises(UnknownGpuError, match="unknown GPU 'b200'; known GPUs: a100, a100_40gb, a10g, a40, h100"):
        plan(predictor, gpu="b200")
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'"):
        get_model("gpt-5")


def test_scheduler_knobs_the_scheduler_rejects(predictor: OperatorPredictor) -> None:
    config = DeploymentConfig(scheduler=ReplicaSchedulerConfig(token_budget=64, max_num_seqs=128))
    with pytest.raises(DeploymentError, match=r"token_budget \(64\) must be at least max_num_seqs \(128\)"):
        plan_deployment(config, predictor)
    with pytest.raises(DeploymentError, match="unknown scheduler policy 'fifo'"):
        ReplicaSchedulerConfig(policy="fifo")
    with pytest.raises(SchedulerConfigError, match="watermark must be in"):
        _simulator.SchedulerConfig(watermark=1.5)


def test_malformed_workloads_are_refused_by_the_simulator(llama7b_h100: Simulator) -> None:
    def workload(arrivals: list[float], prompts: list[int], outputs: list[int]) -> Workload:
        n = len(arrivals)
        return Workload(np.arange(n), np.array(arrivals), np.array(prompts), np.array(outputs), np.zeros(n, dtype=bool))

    with pytest.raises(InvalidWorkloadError, match="arrival times must be sorted"):
        llama7b_h100.run(workload([1.0, 0.5], [10, 10], [1, 1]))
    with pytest.raises(InvalidWorkloadError, match="request 1 asks for no output tokens"):
        llama7b_h100.run(workload([0.0, 0.5], [10, 10], [1, 0]))
    with pytest.raises(InvalidWorkloadError, match=r"num_prompt_tokens\[0\] must be in 0..=4294967295"):
        llama7b_h100.run(workload([0.0], [-3], [1]))
    with pytest.raises(ValueError, match="workload column arrival_s has 1 entries, expected 2"):
        Workload(np.arange(2), np.zeros(1), np.ones(2), np.ones(2), np.zeros(2, dtype=bool))


def test_a_request_too_long_for_the_replica_fails_alone(llama7b_h100: Simulator) -> None:
    from metron.deadlines import DeadlineConfig

    workload = Workload(np.arange(2), np.zeros(2), np.array([5000, 100]), np.array([4, 4]), np.zeros(2, dtype=bool))
    records = llama7b_h100.run(workload).records(DeadlineConfig())
    assert records[0].outcome == "error" and "max_model_len" in (records[0].error or "")
    assert records[1].outcome == "finished"


def test_bad_cost_model_parts_raise_cost_model_errors() -> None:
    with pytest.raises(InvalidCostModelError, match="knots must be strictly increasing"):
        _simulator.Curve([2.0, 1.0], [1.0, 1.0], 0.0)
    with pytest.raises(InvalidCostModelError, match="per_byte_s must be finite and non-negative"):
        _simulator.KernelCost(per_byte_s=-1e-12)
    with pytest.raises(InvalidCostModelError, match='unknown operator placement "middle"'):
        _simulator.OperatorTerm("x", _simulator.Curve([1.0], [1.0], 0.0), placement="middle")
    with pytest.raises(InvalidCostModelError, match="num_q_heads must be in"):
        kernel = _simulator.KernelCost(launch_s=1e-5)
        _simulator.AttentionModel(
            num_q_heads=-1,
            num_kv_heads=1,
            head_dim=1,
            dtype_bytes=2,
            prefill=kernel,
            decode=kernel,
            kv_save=kernel,
        )


def test_config_files_name_unknown_keys(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text('[replica]\ngpus = "h100"\n')
    with pytest.raises(ValueError, match=r"\[replica\]: unknown key\(s\) gpus; known keys: allow_longer_context, gpu, gpu_price_per_hour"):
        load_config(path, [])
    with pytest.raises(ValueError, match="unknown section 'replicas'"):
        load_config(None, ["replicas.gpu=a100"])
    with pytest.raises(ValueError, match=r"\[replica\].tensor_parallel must be a int, got 'two'"):
        load_config(None, ["replica.tensor_parallel=two"])


def test_a_malformed_deployment_raises_a_deployment_error_once_prefixed(llama7b_h100: Simulator) -> None:
    def run(**deployment: object) -> None:
        _simulator.simulate(
            cost_model=llama7b_h100.cost_model,
            scheduler=llama7b_h100.deployment.scheduler_config(),
            arrival_times=[0.0],
            num_prompt_tokens=[10],
            num_output_tokens=[1],
            **deployment,  # type: ignore[arg-type]
        )

    with pytest.raises(InvalidDeploymentError) as router:
        run(router="fastest")
    assert str(router.value) == (
        'invalid deployment: unknown router "fastest"; expected one of round_robin, least_outstanding, random, '
        "prefix_affinity"
    )
    with pytest.raises(InvalidDeploymentError, match="^invalid deployment: a deployment needs at least one replica$"):
        run(num_replicas=0)
    with pytest.raises(InvalidDeploymentError, match=r"^invalid deployment: num_replicas must be in 0..=4294967295"):
        run(num_replicas=-1)
    with pytest.raises(InvalidCostModelError) as overheads:
        _simulator.CpuOverheads(sample=(-1.0, 0.0))
    assert str(overheads.value).startswith("invalid cost model: sample: CPU overheads must be finite")
    assert str(overheads.value).count("invalid cost model") == 1


def test_batch_sums_do_not_wrap(llama7b_h100: Simulator) -> None:
    cost = llama7b_h100.cost_model
    largest = 2**32 - 1
    one = cost.predict([(largest, 0, False, True)])
    two = cost.predict([(largest, 0, False, True), (largest, 0, False, True)])
    assert two.num_tokens == 2 * largest
    assert two.latency_s > one.latency_s


def test_a_max_model_len_beyond_the_models_context_needs_the_override(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--data-dir", str(data_dir), "--num-requests", "5", "--set", "workload.lengths.kind=uniform"]
    assert main([*args, "--set", "scheduler.max_model_len=100000"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vidur: error: scheduler.max_model_len=100000 exceeds meta-llama/Llama-2-7b-hf's context")
    assert "(max_position_embeddings 4096)" in error and "replica.allow_longer_context = true" in error
    override = ["--set", "replica.allow_longer_context=true"]
    assert main([*args, "--set", "scheduler.max_model_len=16384", *override]) == 0
    assert main([*args, "--set", "scheduler.max_model_len=4096"]) == 0  # the context itself is no override


def test_workload_columns_of_the_wrong_type_are_named(llama7b_h100: Simulator) -> None:
    def run(arrival_times: object, num_prompt_tokens: object) -> _simulator.SimulationOutput:
        return _simulator.simulate(
            cost_model=llama7b_h100.cost_model,
            scheduler=llama7b_h100.deployment.scheduler_config(),
            arrival_times=arrival_times,  # type: ignore[arg-type]
            num_prompt_tokens=num_prompt_tokens,  # type: ignore[arg-type]
            num_output_tokens=np.array([1, 2], dtype=np.int64),
        )

    # Arrays are read in place, lists value by value: the same run.
    as_arrays = run(np.array([0.0, 0.5]), np.array([10, 20], dtype=np.int64))
    as_lists = run([0.0, 0.5], [10, 20])
    assert as_arrays.request_columns() == as_lists.request_columns()
    with pytest.raises(InvalidWorkloadError, match=r"arrival_times must be float64 values, got a buffer of format \"f\""):
        run(np.array([0.0, 0.5], dtype=np.float32), [10, 20])
    with pytest.raises(InvalidWorkloadError, match=r"num_prompt_tokens must be int64 values, got a buffer of format \"i\""):
        run([0.0, 0.5], np.array([10, 20], dtype=np.int32))
    with pytest.raises(InvalidWorkloadError, match="num_prompt_tokens must be a sequence of int64 numbers"):
        run([0.0, 0.5], ["ten", "twenty"])
