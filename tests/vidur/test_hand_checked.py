"""Runs small enough to check by hand: an idle replica's one request, and one batch's time
rebuilt operator by operator from the predictor's own curves."""

import numpy as np
import pytest
from metron.deadlines import DeadlineConfig

from vidur import (
    ClusterConfig,
    Deployment,
    DeploymentConfig,
    OperatorPredictor,
    ReplicaConfig,
    Simulator,
    Workload,
    get_gpu,
    plan_deployment,
)
from vidur.attention_costs import FittedKernelCost
from vidur.predictor import COLLECTIVE_LATENCY_S, RING_EFFICIENCY

Entry = tuple[int, int, bool, bool]


def _kernel_s(
    k: FittedKernelCost,
    tokens: float,
    items: float,
    max_context: float,
    context_flops: float,
    causal_flops: float,
    bytes_moved: float,
) -> float:
    return (
        k.launch_s
        + k.per_token_s * tokens
        + k.per_item_s * items
        + k.per_context_token_s * max_context
        + k.per_context_flop_s * context_flops
        + k.per_causal_flop_s * causal_flops
        + k.per_byte_s * bytes_moved
    )


def expected_iteration_s(deployment: Deployment, batch: list[Entry]) -> dict[str, float]:
    """The batch's time rebuilt here from the operator curves and the attention formulas of the
    README, independently of the Rust cost model."""
    spec = deployment.cost_model
    stages = spec.num_stages
    tokens = sum(entry[0] for entry in batch)
    sampled = sum(entry[3] for entry in batch)
    stage_s = np.zeros(stages)
    communication = 0.0
    for op in spec.operators:
        count = tokens if op.input == "tokens" else sampled
        seconds = op.repeat * float(op.curve(count)) if count else 0.0
        on = {
            "every_stage": list(range(stages)),
            "first_stage": [0],
            "last_stage": [stages - 1],
            "between_stages": list(range(stages - 1)),
        }[op.placement]
        stage_s[on] += seconds
        if op.kind == "communication":
            communication += seconds * len(on)
    a = spec.attention
    h, kv, d, b = a.num_q_heads, a.num_kv_heads, a.head_dim, a.dtype_bytes
    prefills = [(n, context) for n, context, is_prefill, _ in batch if is_prefill]
    decode_contexts = [context + 1 for _, context, is_prefill, _ in batch if not is_prefill]
    layer = _kernel_s(a.kv_save, tokens, 0, 0, 0, 0, 4 * kv * d * b * tokens)
    if prefills:
        chunk_tokens = sum(n for n, _ in prefills)
        layer += _kernel_s(
            a.prefill,
            chunk_tokens,
            chunk_tokens * h,
            max(n + context for n, context in prefills),
            sum(4 * h * d * n * context for n, context in prefills),
            sum(4 * h * d * n * (n + 1) / 2 for n, _ in prefills),
            sum(b * d * (2 * h * n + 2 * kv * (context + n)) for n, context in prefills),
        )
    if decode_contexts:
        num_decodes, total = len(decode_contexts), sum(decode_contexts)
        layer += _kernel_s(
            a.decode,
            num_decodes,
            num_decodes * kv,
            max(decode_contexts),
            4 * h * d * total,
            0,
            b * d * (2 * kv * total + 2 * h * num_decodes),
        )
    stage_s += spec.layers_per_stage * layer
    cpu = spec.cpu_overheads
    seqs = len(batch)
    before = sum(base + per * seqs for base, per in (cpu.schedule, cpu.prepare_inputs))
    after = cpu.sample[0] + cpu.sample[1] * sampled + cpu.process_outputs[0] + cpu.process_outputs[1] * seqs
    return {
        "latency_s": before + float(stage_s.sum()) + after,
        "attention_s": spec.layers_per_stage * layer * stages,
        "communication_s": communication,
    }


def one_request(prompt: int, output: int, arrival: float = 2.5) -> Workload:
    return Workload(
        ids=np.array([0]),
        arrival_s=np.array([arrival]),
        prompt_tokens=np.array([prompt]),
        output_tokens=np.array([output]),
        warmup=np.array([False]),
    )


def test_one_request_on_an_idle_replica_gets_predicted_prefill_then_decode_times(llama7b_h100: Simulator) -> None:
    prompt, output, arrival = 300, 6, 2.5
    result = llama7b_h100.run(one_request(prompt, output, arrival))
    record = result.records(DeadlineConfig())[0]
    cost = llama7b_h100.cost_model
    prefill = cost.predict([(prompt, 0, True, True)]).latency_s
    assert record.ttft_s == pytest.approx(prefill, rel=1e-12)
    # Async scheduling (the default, as in the engine) sends each decode while the one before
    # runs, so the engine's own time is hidden: each gap is the workers' time alone.
    decodes = [cost.predict([(1, prompt + k - 1, False, True)]).worker_s for k in range(1, output)]
    assert record.tbt_s == pytest.approx(decodes, rel=1e-9)
    assert record.output_tokens == output and record.finished
    assert record.scheduling_delay_s == 0.0


def test_a_prompt_longer_than_the_chunk_is_prefilled_in_chunks(llama7b_h100: Simulator) -> None:
    result = llama7b_h100.run(one_request(1300, 2, 0.0))
    cost = llama7b_h100.cost_model
    chunks = [cost.predict([chunk]) for chunk in [(512, 0, True, False), (512, 512, True, False), (276, 1024, True, True)]]
    # Each chunk is sent while the one before runs (async scheduling): the workers run them back
    # to back, the engine's time shows only before the first and after the last.
    expected = chunks[0].engine_before_s + sum(chunk.worker_s for chunk in chunks) + chunks[-1].engine_after_s
    assert result.token_times(0)[0] == pytest.approx(expected, rel=1e-12)
    assert result.iterations["num_prefill_tokens"].tolist() == [512, 512, 276, 0]


BATCH: list[Entry] = [
    (1, 700, False, True),
    (1, 1500, False, True),
    (1, 33, False, True),
    (200, 0, True, False),
    (120, 400, True, True),
]


@pytest.mark.parametrize(("tp", "pp"), [(1, 1), (2, 2), (4, 1)])
def test_a_batch_costs_the_sum_of_its_operator_predictions(predictor: OperatorPredictor, tp: int, pp: int) -> None:
    config = DeploymentConfig(replica=ReplicaConfig(gpu="a100", tensor_parallel=tp, pipeline_parallel=pp))
    deployment = plan_deployment(config, predictor)
    prediction = deployment.cost_model.build().predict(BATCH)
    expected = expected_iteration_s(deployment, BATCH)
    assert prediction.latency_s == pytest.approx(expected["latency_s"], rel=1e-9)
    assert prediction.attention_s == pytest.approx(expected["attention_s"], rel=1e-9)
    assert prediction.communication_s == pytest.approx(expected["communication_s"], rel=1e-9, abs=1e-15)
    names = {op.name for op in deployment.cost_model.operators}
    assert ("all_reduce" in names) == (tp > 1) and ("send_recv" in names) == (pp > 1)
    assert ("logits_gather" in names) == (tp > 1)


def test_tensor_parallel_lm_head_gathers_its_logit_shards(predictor: OperatorPredictor) -> None:
    # A40s have no network profile here, so the gather is the ring model: each of p GPUs sends
    # (p - 1) / p of the full logits (vocab x 2 bytes per sampled token) over one link direction.
    config = DeploymentConfig(replica=ReplicaConfig(model="llama-2-7b", gpu="a40", tensor_parallel=2))
    deployment = plan_deployment(config, predictor)
    gather = next(op for op in deployment.cost_model.operators if op.name == "logits_gather")
    assert (gather.input, gather.placement, gather.kind) == ("sampled_tokens", "last_stage", "communication")
    link_bytes_per_s = get_gpu("a40").interconnect_gb_s / 2 * 1e9 * RING_EFFICIENCY
    for sampled in (1, 64):
        moved = (2 - 1) / 2 * 32000 * 2 * sampled
        assert float(gather.curve(sampled)) == pytest.approx(COLLECTIVE_LATENCY_S + moved / link_bytes_per_s)
    # Only sequences that sample pay it: a batch of prefill chunks that sample nothing does not.
    rust = deployment.cost_model.build()
    silent = rust.predict([(100, 0, True, False)])
    sampling = rust.predict([(100, 0, True, True)])
    assert sampling.communication_s - silent.communication_s == pytest.approx(float(gather.curve(1)))


def test_pipeline_stages_overlap_so_throughput_beats_one_pass_per_iteration(predictor: OperatorPredictor) -> None:
    workload = Workload(
        ids=np.arange(64),
        arrival_s=np.zeros(64),
        prompt_tokens=np.full(64, 64),
        output_tokens=np.full(64, 200),
        warmup=np.zeros(64, dtype=bool),
    )
    spans = {}
    for pp in (1, 4):
        config = DeploymentConfig(
            replica=ReplicaConfig(model="llama-2-70b", gpu="a100", tensor_parallel=2, pipeline_parallel=pp)
        )
        result = Simulator(plan_deployment(config, predictor)).run(workload)
        it = result.iterations
        overlapping = [(it["end_s"][:i] > start).sum() for i, start in enumerate(it["start_s"])]
        in_flight = pp if pp > 1 else 2  # one stage: async scheduling keeps the next batch ready
        assert max(overlapping) == in_flight - 1
        spans[pp] = result.end_s
    # Four stages of 20 layers each, overlapped, finish far sooner than one pass per batch would.
    assert spans[4] < spans[1]


def test_replicas_split_the_load_and_ids_start_at_zero(predictor: OperatorPredictor) -> None:
    config = DeploymentConfig(cluster=ClusterConfig(num_replicas=3, router="round_robin"))
    workload = Workload(
        ids=np.arange(9),
        arrival_s=np.arange(9) * 0.01,
        prompt_tokens=np.full(9, 100),
        output_tokens=np.full(9, 5),
        warmup=np.zeros(9, dtype=bool),
    )
    result = Simulator(plan_deployment(config, predictor)).run(workload)
    assert result.requests["replica"].tolist() == [0, 1, 2] * 3
    assert sorted(set(result.iterations["replica"].tolist())) == [0, 1, 2]
