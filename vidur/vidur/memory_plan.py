"""How a replica's GPU memory is spent: weights, activations, and the KV cache with the rest.

Every GPU of a replica holds its shard of the weights (1/TP of its pipeline stage's layers, plus
the embedding on the first stage and the LM head on the last) and the activations of the largest
batch; what is left of `memory_utilization` x the GPU's memory becomes KV-cache blocks. All
stages get the same number of blocks (a request's blocks live on every stage), so the stage
with the least room decides.
"""

import math
from dataclasses import dataclass

from vidur.errors import DeploymentError, ModelDoesNotFitError, ParallelismError
from vidur.gpus import GIB, GpuSpec
from vidur.models import ModelSpec


@dataclass(frozen=True, slots=True)
class ReplicaShape:
    """A model on `tensor_parallel` x `pipeline_parallel` GPUs of one type."""

    model: ModelSpec
    gpu: GpuSpec
    tensor_parallel: int = 1
    pipeline_parallel: int = 1

    def __post_init__(self) -> None:
        tp, pp, model = self.tensor_parallel, self.pipeline_parallel, self.model
        if tp < 1 or pp < 1:
            raise ParallelismError(f"tensor_parallel and pipeline_parallel must be at least 1, got {tp} and {pp}")
        if model.num_q_heads % tp:
            raise ParallelismError(
                f"tensor_parallel={tp} does not divide {model.name}'s {model.num_q_heads} attention heads"
            )
        if model.num_kv_heads % tp and tp % model.num_kv_heads:
            raise ParallelismError(
                f"tensor_parallel={tp} neither divides nor is a multiple of {model.name}'s "
                f"{model.num_kv_heads} KV heads"
            )
        if model.intermediate_size % tp:
            raise ParallelismError(
                f"tensor_parallel={tp} does not divide {model.name}'s MLP width {model.intermediate_size}"
            )
        if model.num_layers % pp:
            raise ParallelismError(f"pipeline_parallel={pp} does not divide {model.name}'s {model.num_layers} layers")

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def layers_per_stage(self) -> int:
        return self.model.num_layers // self.pipeline_parallel

    @property
    def q_heads_per_gpu(self) -> int:
        return self.model.num_q_heads // self.tensor_parallel

    @property
    def kv_heads_per_gpu(self) -> int:
        """KV heads are replicated when there are fewer of them than GPUs."""
        return max(self.model.num_kv_heads // self.tensor_parallel, 1)

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one token on one GPU (its stage's layers, its heads)."""
        model = self.model
        return 2 * self.layers_per_stage * self.kv_heads_per_gpu * model.head_dim * model.dtype_bytes


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    gpu_memory_bytes: float
    usable_bytes: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes_per_token: int
    block_size: int
    num_blocks: int

    @property
    def kv_cache_bytes(self) -> float:
        return float(self.num_blocks * self.block_size * self.kv_bytes_per_token)

    @property
    def max_kv_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def as_dict(self) -> dict[str, float | int]:
        return {
            "gpu_memory_gib": self.gpu_memory_bytes / GIB,
            "usable_gib": self.usable_bytes / GIB,
            "weights_gib": self.weight_bytes / GIB,
            "activations_gib": self.activation_bytes / GIB,
            "kv_cache_gib": self.kv_cache_bytes / GIB,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "block_size": self.block_size,
            "num_blocks": self.num_blocks,
            "max_kv_tokens": self.max_kv_tokens,
        }


def weight_bytes_per_gpu(shape: ReplicaShape) -> float:
    """The largest shard any GPU holds: its stage's layers over TP, plus embedding or LM head."""
    model, tp = shape.model, shape.tensor_parallel
    layers = shape.layers_per_stage * model.layer_params / tp
    embedding = model.embedding_params / tp
    lm_head = 0 if model.tie_word_embeddings else embedding
    if shape.pipeline_parallel == 1:
        params = layers + embedding + lm_head
    else:
        params = layers + max(embedding, lm_head)
    return params * model.dtype_bytes


def activation_bytes_per_gpu(shape: ReplicaShape, max_batch_tokens: int, max_num_seqs: int) -> float:
    """Peak live activations of one forward pass of the largest batch: the residual stream and
    its normalised copy, the QKV projection and the MLP's intermediate tensors, plus float32
    logits for every sampled sequence."""
    model, tp = shape.model, shape.tensor_parallel
    per_token = (
        2 * model.hidden_size
        + (model.q_dim + 2 * shape.kv_heads_per_gpu * model.head_dim * tp) / tp
        + 3 * model.intermediate_size / tp
    )
    logits = max_num_seqs * model.vocab_size / tp * 4
    return max_batch_tokens * per_token * model.dtype_bytes + logits


def plan_memory(
    shape: ReplicaShape,
    *,
    block_size: int,
    max_batch_tokens: int,
    max_num_seqs: int,
    max_model_len: int,
    memory_utilization: float = 0.9,
    num_blocks: int | None = None,
) -> MemoryPlan:
    """`num_blocks`, when given, is the replica's exact number of KV blocks (as the engine's
    `--num-kv-blocks`), instead of what the memory left after weights and activations holds."""
    if not 0 < memory_utilization <= 1:
        raise DeploymentError(f"memory_utilization must be in (0, 1], got {memory_utilization}")
    gpu, model = shape.gpu, shape.model
    usable = memory_utilization * gpu.memory_bytes
    weights = weight_bytes_per_gpu(shape)
    activations = activation_bytes_per_gpu(shape, max_batch_tokens, max_num_seqs)
    layout = f"TP={shape.tensor_parallel}, PP={shape.pipeline_parallel}"
    if weights + activations >= usable:
        raise ModelDoesNotFitError(
            f"{model.name} does not fit on {gpu.name} at {layout}: each GPU needs {weights / GIB:.1f} GiB "
            f"of weights and {activations / GIB:.1f} GiB of activations, but has {usable / GIB:.1f} GiB usable "
            f"({memory_utilization:.0%} of {gpu.memory_gib:g} GiB); use more GPUs per replica or a larger GPU"
        )
    kv_bytes_per_token = shape.kv_bytes_per_token
    if num_blocks is None:
        num_blocks = math.floor((usable - weights - activations) / (block_size * kv_bytes_per_token))
    elif num_blocks < 1 or num_blocks * block_size * kv_bytes_per_token > usable - weights - activations:
        raise ModelDoesNotFitError(
            f"{num_blocks} KV blocks of {block_size} tokens do not fit on {gpu.name} at {layout} beside the "
            f"weights and activations ({(usable - weights - activations) / GIB:.2f} GiB left)"
        )
    if num_blocks * block_size < max_model_len:
        raise ModelDoesNotFitError(
            f"{model.name} on {gpu.name} at {layout} leaves room for {num_blocks * block_size} KV tokens, "
            f"fewer than one request of max_model_len={max_model_len}; use more GPUs per replica, a larger GPU "
            f"or a smaller max_model_len"
        )
    return MemoryPlan(gpu.memory_bytes, usable, weights, activations, kv_bytes_per_token, block_size, num_blocks)
