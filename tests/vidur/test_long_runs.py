"""Long runs: conservation, Little's law, bit-identical reruns, and the policy effects the
Sarathi-Serve paper reports, reproduced qualitatively."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.metrics import RequestRecord
from metron.summary import Metrics, summarize
from metron.workload import WorkloadConfig

from vidur import (
    ClusterConfig,
    DeploymentConfig,
    OperatorPredictor,
    ReplicaConfig,
    ReplicaSchedulerConfig,
    Simulator,
    Workload,
    plan_deployment,
    workload_for,
)

Factory = Callable[..., Workload]


def test_every_request_finishes_tokens_are_conserved_and_littles_law_holds(
    llama7b_h100: Simulator, make_workload: Factory
) -> None:
    workload = make_workload(3000, rate=6.0, seed=3, prompt=(50, 2000), output=(1, 400))
    result = llama7b_h100.run(workload)
    columns = result.requests
    assert not result.rejections
    assert (columns["finish_reason"] == 1).all()
    assert np.array_equal(columns["num_tokens"], workload.output_tokens)
    assert int(columns["num_tokens"].sum()) == int(workload.output_tokens.sum())
    for index in range(0, len(workload), 97):
        times = result.token_times(index)
        assert times[0] > workload.arrival_s[index]
        assert np.all(np.diff(times) > 0)

    it = result.iterations
    prefilled = it["num_prefill_tokens"].sum()
    assert prefilled == workload.prompt_tokens.sum()  # no preemption at this load: each prompt once
    assert it["num_sampled"].sum() == workload.output_tokens.sum()

    # Little's law: L (time-average requests in the system, from the scheduler's own queue
    # counts) = lambda (arrival rate) x W (mean time in the system).
    span = float(columns["finished_s"].max() - workload.arrival_s[0])
    in_system = (it["num_waiting"] + it["num_running"]).astype(float)
    # Each count holds from its iteration's scheduling to the next one's (iterations overlap
    # under async scheduling, so their own durations would count some time twice).
    held_s = np.diff(np.append(it["start_s"], it["end_s"][-1]))
    mean_in_system = float((in_system * held_s).sum() / span)
    mean_sojourn = float((columns["finished_s"] - workload.arrival_s).mean())
    assert mean_in_system == pytest.approx(len(workload) / span * mean_sojourn, rel=0.05)
    # Stable load: requests leave as fast as they come.
    assert len(workload) / span == pytest.approx(6.0, rel=0.1)


def test_the_same_seed_gives_bit_identical_results(predictor: OperatorPredictor, make_workload: Factory) -> None:
    def run(seed: int) -> tuple[dict[str, np.ndarray], list[RequestRecord]]:
        config = DeploymentConfig(cluster=ClusterConfig(num_replicas=3, router="random", seed=seed))
        simulator = Simulator(plan_deployment(config, predictor))
        result = simulator.run(make_workload(600, rate=20.0, seed=seed, prompt=(10, 1500), output=(1, 200)))
        return result.requests | {f"it.{k}": v for k, v in result.iterations.items()}, result.records(DeadlineConfig())

    first, first_records = run(11)
    second, second_records = run(11)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), name
    assert first_records == second_records
    third, _ = run(12)
    assert not np.array_equal(first["replica"], third["replica"])


def _run(predictor: OperatorPredictor, policy: str, qps: float, trace: Path) -> Metrics:
    config = DeploymentConfig(replica=ReplicaConfig(gpu="a100"), scheduler=ReplicaSchedulerConfig(policy=policy))
    deployment = plan_deployment(config, predictor)
    workload = workload_for(
        WorkloadConfig(
            num_requests=400,
            seed=1,
            arrivals=ArrivalConfig(kind="poisson", rate=qps),
            lengths=LengthConfig(kind="trace", trace_path=str(trace)),
        ),
        deployment,
    )
    result = Simulator(deployment).run(workload, record_iterations=False)
    return summarize(result.records(DeadlineConfig()))


def test_sarathi_beats_vllm_on_tail_tbt_and_vllm_wins_ttft_at_low_load(
    predictor: OperatorPredictor, data_dir: Path
) -> None:
    # arxiv_summarization: long prompts (thousands of tokens), short outputs.
    trace = data_dir / "traces" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    loaded = {policy: _run(predictor, policy, 1.5, trace) for policy in ("sarathi", "vllm")}
    assert loaded["sarathi"]["tbt_s.p99"] < 0.5 * loaded["vllm"]["tbt_s.p99"]  # type: ignore[operator]
    idle = {policy: _run(predictor, policy, 0.2, trace) for policy in ("sarathi", "vllm")}
    assert idle["vllm"]["ttft_s.p50"] < idle["sarathi"]["ttft_s.p50"]  # type: ignore[operator]
