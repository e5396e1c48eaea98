"""Turns a replica's shape and the trained predictor into the cost model the simulator runs.

Per pipeline stage: every layer's operators (repeated `layers_per_stage` times), two
all-reduces per layer under tensor parallelism, attention over the KV cache; the embedding on
the first stage, the LM head (and, under TP, the gather of its logit shards) on the last, an
activation send between stages; CPU overheads before and after the forward pass. Plain data,
so it can be pickled to worker processes and written into a run's summary.
"""

from dataclasses import dataclass

from vidur import _simulator
from vidur.attention_costs import FittedKernelCost
from vidur.curves import CurveData
from vidur.layer import ALL_REDUCES_PER_LAYER, LAYER_OPERATORS
from vidur.memory_plan import ReplicaShape
from vidur.predictor import OperatorPredictor


@dataclass(frozen=True, slots=True)
class CpuOverheadConfig:
    """Host time per iteration, each `(seconds, seconds per sequence)`: per sequence in the batch,
    except `sample`, per sequence that samples a token (a prefill chunk that does not finish its
    prompt samples nothing). As the engine spends it (`engine.core.engine_core`):

    - `schedule`: the engine scheduling, building and sending a step;
    - `prepare_inputs`: the workers receiving it and building its inputs (before the forward pass);
    - `sample`: the workers' time after the forward pass (sampling, answering);
    - `process_outputs`: the outputs reaching the engine and the engine applying them.

    The workers' two are in series with the forward pass; the engine's two, with async
    scheduling (the default), overlap the workers' running of the batch before.

    The defaults were fitted (`vidur fit-overheads`) on this project's engine's iteration log:
    the demo model served on the CPU of a 2-vCPU x86 VM, at 85% of its capacity
    (`benchmarks/fidelity.py`, December 2026). They depend on the host's speed and, for
    `prepare_inputs`, on the attention backend's per-step preparation: fit your own engine's
    (`python -m engine --iteration-log FILE`, then `vidur fit-overheads FILE`, or `vidur
    validate`, which does both)."""

    schedule: tuple[float, float] = (70e-6, 0.0)
    prepare_inputs: tuple[float, float] = (1.4e-3, 9e-6)
    sample: tuple[float, float] = (370e-6, 6e-6)
    process_outputs: tuple[float, float] = (900e-6, 9e-6)

    def __post_init__(self) -> None:
        for name in ("schedule", "prepare_inputs", "sample", "process_outputs"):
            cost = getattr(self, name)
            if len(cost) != 2:
                raise ValueError(f"cpu overhead {name} must be [seconds, seconds per sequence], got {cost}")
            base, per_seq = cost
            if base < 0 or per_seq < 0:
                raise ValueError(f"cpu overhead {name} must be non-negative, got {(base, per_seq)}")

    def to_rust(self) -> _simulator.CpuOverheads:
        return _simulator.CpuOverheads(
            schedule=self.schedule,
            prepare_inputs=self.prepare_inputs,
            sample=self.sample,
            process_outputs=self.process_outputs,
        )


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    name: str
    curve: CurveData
    repeat: float
    input: str
    placement: str
    kind: str
    source: str

    def to_rust(self) -> _simulator.OperatorTerm:
        return _simulator.OperatorTerm(
            self.name,
            self.curve.to_rust(),
            repeat=self.repeat,
            input=self.input,
            placement=self.placement,
            kind=self.kind,
        )


@dataclass(frozen=True, slots=True)
class AttentionSpec:
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    dtype_bytes: int
    prefill: FittedKernelCost
    decode: FittedKernelCost
    kv_save: FittedKernelCost
    source: str

    def to_rust(self) -> _simulator.AttentionModel:
        return _simulator.AttentionModel(
            num_q_heads=self.num_q_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            dtype_bytes=self.dtype_bytes,
            prefill=self.prefill.to_rust(),
            decode=self.decode.to_rust(),
            kv_save=self.kv_save.to_rust(),
        )


@dataclass(frozen=True, slots=True)
class CostModelSpec:
    num_stages: int
    layers_per_stage: int
    operators: tuple[OperatorSpec, ...]
    attention: AttentionSpec
    cpu_overheads: CpuOverheadConfig
    max_tokens: int

    def build(self) -> _simulator.CostModel:
        return _simulator.CostModel(
            num_stages=self.num_stages,
            layers_per_stage=self.layers_per_stage,
            operators=[op.to_rust() for op in self.operators],
            attention=self.attention.to_rust(),
            cpu_overheads=self.cpu_overheads.to_rust(),
            max_tokens=self.max_tokens,
        )

    def sources(self) -> dict[str, str]:
        """Where each operator's prediction comes from."""
        return {op.name: op.source for op in self.operators} | {"attention": self.attention.source}


def build_cost_model(
    shape: ReplicaShape, predictor: OperatorPredictor, cpu_overheads: CpuOverheadConfig, max_tokens: int
) -> CostModelSpec:
    model, gpu, tp = shape.model, shape.gpu, shape.tensor_parallel
    layers = shape.layers_per_stage
    operators = []
    for name, per_layer in LAYER_OPERATORS:
        predicted = predictor.operator_curve(gpu, model, name, tp, max_tokens)
        operators.append(
            OperatorSpec(
                name, predicted.curve, layers * per_layer, "tokens", "every_stage", "compute", predicted.source
            )
        )
    embedding = predictor.operator_curve(gpu, model, "emb", tp, max_tokens)
    operators.append(OperatorSpec("emb", embedding.curve, 1, "tokens", "first_stage", "compute", embedding.source))
    # The final norm (and the residual add it starts with) before the LM head, over every token.
    for name, operator in (("final_add", "add"), ("final_norm", "post_attention_layernorm")):
        curve = predictor.operator_curve(gpu, model, operator, tp, max_tokens)
        operators.append(OperatorSpec(name, curve.curve, 1, "tokens", "last_stage", "compute", curve.source))
    lm_head = predictor.operator_curve(gpu, model, "lm_head", tp, max_tokens)
    operators.append(
        OperatorSpec("lm_head", lm_head.curve, 1, "sampled_tokens", "last_stage", "compute", lm_head.source)
    )
    activation_bytes = model.hidden_size * model.dtype_bytes
    if tp > 1:
        all_reduce = predictor.collective_curve(gpu, "all_reduce", tp, activation_bytes, max_tokens)
        repeat = layers * ALL_REDUCES_PER_LAYER
        operators.append(
            OperatorSpec(
                "all_reduce", all_reduce.curve, repeat, "tokens", "every_stage", "communication", all_reduce.source
            )
        )
        # The vocabulary-parallel embedding is summed across the TP group too.
        operators.append(
            OperatorSpec(
                "emb_all_reduce", all_reduce.curve, 1, "tokens", "first_stage", "communication", all_reduce.source
            )
        )
        # The vocabulary-parallel LM head gathers its logit shards. A ring all-gather moves (p - 1) / p
        # of the message through every link, half of what an all-reduce of the same message moves.
        logits_bytes = model.vocab_size * model.dtype_bytes / 2
        logits_gather = predictor.collective_curve(gpu, "all_reduce", tp, logits_bytes, max_tokens)
        operators.append(
            OperatorSpec(
                "logits_gather",
                logits_gather.curve,
                1,
                "sampled_tokens",
                "last_stage",
                "communication",
                f"{logits_gather.source}, as an all-gather of {model.vocab_size} logits per sampled token",
            )
        )
    if shape.pipeline_parallel > 1:
        send_recv = predictor.collective_curve(gpu, "send_recv", shape.num_gpus, activation_bytes, max_tokens)
        operators.append(
            OperatorSpec("send_recv", send_recv.curve, 1, "tokens", "between_stages", "communication", send_recv.source)
        )
    costs = predictor.attention_costs(gpu)
    attention = AttentionSpec(
        num_q_heads=shape.q_heads_per_gpu,
        num_kv_heads=shape.kv_heads_per_gpu,
        head_dim=model.head_dim,
        dtype_bytes=model.dtype_bytes,
        prefill=costs.prefill,
        decode=costs.decode,
        kv_save=costs.kv_save,
        source=f"cost per kernel: {costs.source}",
    )
    return CostModelSpec(
        num_stages=shape.pipeline_parallel,
        layers_per_stage=layers,
        operators=tuple(operators),
        attention=attention,
        cpu_overheads=cpu_overheads,
        max_tokens=max_tokens,
    )
