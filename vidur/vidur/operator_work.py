"""FLOPs and bytes of each per-token operator on one GPU, from the layer shape alone.

The roofline side of the predictor uses these to extend profiles to shapes and GPUs that were
never profiled, and to model the LM head (never profiled).
"""

import numpy as np

from vidur.models import ModelSpec
from vidur.profiles import LayerShape

# Elementwise operators (and the embedding gather): a few FLOPs per element moved, far below any
# GPU's ridge point (hundreds of FLOPs per byte), and FLOPs proportional to bytes, so a roofline
# fit could not tell their compute from their memory traffic. The roofline models them by bytes.
MEMORY_BOUND_OPERATORS = frozenset(
    {"emb", "input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add"}
)


def layer_shape(model: ModelSpec) -> LayerShape:
    return LayerShape(
        n_head=model.num_q_heads,
        n_kv_head=model.num_kv_heads,
        n_embd=model.hidden_size,
        n_expanded_embd=model.intermediate_size,
        use_gated_mlp=model.is_gated_mlp,
        head_dim=model.head_dim,
    )


def _gemm(tokens: np.ndarray, k: float, n: float, dtype_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A (tokens x k) by (k x n) matrix product: weights, inputs and outputs move once."""
    flops = 2.0 * tokens * k * n
    bytes_moved = dtype_bytes * (k * n + tokens * k + tokens * n)
    return flops, bytes_moved


def operator_work(
    operator: str,
    shape: LayerShape,
    tensor_parallel: int,
    tokens: np.ndarray,
    dtype_bytes: int = 2,
    vocab_size: int = 32000,
) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) arrays for `operator` at each token count, on one of `tensor_parallel` GPUs.
    KV heads are replicated when there are fewer of them than GPUs."""
    n = np.asarray(tokens, dtype=np.float64)
    h = float(shape.n_embd)
    q_out = shape.n_head * shape.head_dim / tensor_parallel
    kv_out = max(shape.n_kv_head / tensor_parallel, 1.0) * shape.head_dim
    mlp = shape.n_expanded_embd / tensor_parallel
    zeros = np.zeros_like(n)
    match operator:
        case "attn_pre_proj":
            return _gemm(n, h, q_out + 2 * kv_out, dtype_bytes)
        case "attn_post_proj":
            return _gemm(n, q_out, h, dtype_bytes)
        case "mlp_up_proj":
            return _gemm(n, h, (2 if shape.use_gated_mlp else 1) * mlp, dtype_bytes)
        case "mlp_down_proj":
            return _gemm(n, mlp, h, dtype_bytes)
        case "lm_head":
            return _gemm(n, h, vocab_size / tensor_parallel, dtype_bytes)
        case "mlp_act":
            passes = 3 if shape.use_gated_mlp else 2
            return 5.0 * n * mlp, dtype_bytes * passes * n * mlp
        case "attn_rope":
            width = q_out + kv_out
            return 6.0 * n * width, dtype_bytes * 2 * n * width
        case "input_layernorm" | "post_attention_layernorm":
            return 5.0 * n * h, dtype_bytes * (2 * n * h + h)
        case "add":
            return n * h, dtype_bytes * 3 * n * h
        case "emb":
            return zeros, dtype_bytes * 2 * n * h
    raise ValueError(f"unknown operator {operator!r}")


def roofline_work(
    operator: str,
    shape: LayerShape,
    tensor_parallel: int,
    tokens: np.ndarray,
    dtype_bytes: int = 2,
    vocab_size: int = 32000,
) -> tuple[np.ndarray, np.ndarray]:
    """What the roofline of `operator` is fitted on and predicts from: `operator_work`, with no
    FLOPs for the memory-bound operators."""
    flops, bytes_moved = operator_work(operator, shape, tensor_parallel, tokens, dtype_bytes, vocab_size)
    if operator in MEMORY_BOUND_OPERATORS:
        return np.zeros_like(flops), bytes_moved
    return flops, bytes_moved
