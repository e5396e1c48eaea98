"""The engine's scheduler and vidur's, built from the same knobs, make the same batches over a
trace, for every policy: vidur simulates a replica, and the engine's scheduler, asked at each of
vidur's iteration start times, schedules exactly what vidur's iteration ran."""

import numpy as np
import pytest

from engine import scheduler as engine_scheduler
from vidur import DeploymentConfig, OperatorPredictor, _simulator, plan_deployment
from metron.traces import read_trace_column

POLICIES = ["sarathi", "vllm", "orca", "faster_transformer", "lightllm"]
KNOBS = dict(max_num_seqs=12, max_model_len=2048, block_size=16, num_blocks=400, max_decode_iters_between_prefills=4)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_engine_and_vidur_make_the_same_batches(policy: str, predictor: OperatorPredictor, data_dir) -> None:  # type: ignore[no-untyped-def]
    trace = data_dir / "traces" / "splitwise_conv.csv"
    count = 150
    prompts = np.minimum(read_trace_column(trace, "num_prefill_tokens")[:count], 1500).astype(np.int64)
    outputs = np.clip(read_trace_column(trace, "num_decode_tokens")[:count], 1, 2048 - prompts).astype(np.int64)
    recorded = read_trace_column(trace, "arrived_at")[:count]
    arrivals = (recorded - recorded[0]) / 4  # four times the recorded rate
    knobs = {"policy": policy, **KNOBS}
    cost_model = plan_deployment(DeploymentConfig(), predictor).cost_model.build()
    simulated = _simulator.simulate(
        cost_model=cost_model,
        scheduler=_simulator.SchedulerConfig(**knobs),  # type: ignore[arg-type]
        arrival_times=arrivals.tolist(),
        num_prompt_tokens=prompts.tolist(),
        num_output_tokens=outputs.tolist(),
    )
    columns = {name: np.frombuffer(data, dtype=dtype) for name, (dtype, data) in simulated.iteration_columns().items()}

    real = engine_scheduler.Scheduler(engine_scheduler.SchedulerConfig(**knobs))  # type: ignore[arg-type]
    assert real.config == engine_scheduler.SchedulerConfig(**knobs)  # type: ignore[arg-type]
    for index in range(count):
        real.add_request(
            index, prompt_len=int(prompts[index]), max_new_tokens=int(outputs[index]), arrival_time=float(arrivals[index])
        )
    num_preempted = 0
    for iteration, start in enumerate(columns["start_s"].tolist()):
        batch = real.schedule(start)
        num_preempted += len(batch.preempted_ids)
        ran = (
            len(batch),
            sum(r.is_prefill for r in batch.requests),
            batch.num_prefill_tokens,
            batch.num_tokens - batch.num_prefill_tokens,
            len(batch.preempted_ids),
        )
        simulated_ran = tuple(
            int(columns[name][iteration])
            for name in ("num_seqs", "num_prefill_seqs", "num_prefill_tokens", "num_decode_tokens", "num_preempted")
        )
        assert ran == simulated_ran, f"{policy}: iteration {iteration} at {start:.4f} s"
        real.update(batch, [1] * batch.num_producing)
    assert len(real) == 0  # every request finished in as many iterations as vidur's
    assert len(columns["start_s"]) > count
    if policy == "sarathi":
        assert num_preempted > 0  # the small KV pool made both preempt, the same requests
