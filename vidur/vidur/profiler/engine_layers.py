"""The MLP-side operators of one transformer layer, run through the engine's own modules
(`engine.worker.model`) on one tensor-parallel rank's shard, as Vidur's `mlp.csv` names them.

The engine fuses each residual add into the RMSNorm after it; the table keeps Vidur's split
(`input_layernorm` and `post_attention_layernorm` the norm alone, `add` the sum it starts with),
so the operators of a layer add up to what the engine runs. `lm_head` is the engine's LM head
over the sampled rows (Vidur's tables have no such column; the predictor uses it when present).
The row-parallel projections and the embedding run as one rank's shard without their
collectives, which the network tables (or the ring model) add.
"""

from collections.abc import Callable
from typing import Any

Operators = dict[str, Callable[[], object]]


def _randomize(*modules: Any) -> None:
    import torch

    with torch.no_grad():
        for module in modules:
            for name, parameter in module.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                elif parameter.dim() > 1:
                    parameter.normal_(0.0, 0.02)


def layer_operators(config: Any, tp: int, num_tokens: int, device: Any, dtype: Any) -> Operators:
    """One callable per operator of one layer on one rank of `tp`, for `num_tokens` tokens."""
    import torch
    import torch.nn.functional as F

    from engine.worker.model.layers.linear import ColumnParallelLinear, QKVParallelLinear, RowParallelLinear
    from engine.worker.model.layers.norm import RMSNorm
    from engine.worker.model.layers.rotary import RotaryEmbedding, apply_rotary
    from engine.worker.model.layers.vocab import ParallelLMHead, VocabParallelEmbedding
    from engine.worker.model.parallel import TensorParallel

    alone = TensorParallel(0, 1)
    hidden, head_dim = config.hidden_size, config.head_dim
    qkv = QKVParallelLinear(
        hidden, head_dim, config.num_heads, config.num_kv_heads, bias=config.qkv_bias, tp=TensorParallel(0, tp)
    )
    q_heads, kv_heads = qkv.num_local_heads, qkv.num_local_kv_heads
    o_proj = RowParallelLinear(q_heads * head_dim, hidden, bias=config.o_proj_bias, tp=alone)
    gate_up = ColumnParallelLinear(hidden, [config.intermediate_size] * 2, bias=config.mlp_bias, tp=TensorParallel(0, tp))
    down = RowParallelLinear(config.intermediate_size // tp, hidden, bias=config.mlp_bias, tp=alone)
    norm = RMSNorm(hidden, config.rms_norm_eps)
    rows_per_rank = -(-config.vocab_size // tp)
    embedding = VocabParallelEmbedding(rows_per_rank, hidden, tp=alone)
    lm_head = ParallelLMHead(rows_per_rank, hidden, tp=alone, tied_to=None)
    rotary = RotaryEmbedding(head_dim, config.max_position_embeddings, config.rope)
    modules = (qkv, o_proj, gate_up, down, norm, embedding, lm_head, rotary)
    _randomize(*modules)
    for module in modules:
        module.to(device=device, dtype=dtype)
    rotary.to(device=device)  # its tables stay float32, as in the engine

    def tensor(*shape: int) -> Any:
        return torch.randn(*shape, device=device, dtype=dtype)

    x, residual = tensor(num_tokens, hidden), tensor(num_tokens, hidden)
    attention_out = tensor(num_tokens, q_heads * head_dim)
    gate_up_out = tensor(num_tokens, gate_up.weight.shape[0])
    activated = tensor(num_tokens, config.intermediate_size // tp)
    query, key = tensor(num_tokens, q_heads, head_dim), tensor(num_tokens, kv_heads, head_dim)
    positions = torch.arange(num_tokens, device=device) % config.max_position_embeddings
    cos, sin = rotary(positions, dtype)
    token_ids = torch.randint(0, rows_per_rank, (num_tokens,), device=device)

    def activation() -> object:
        gate, up = gate_up_out.chunk(2, dim=-1)
        return F.silu(gate) * up

    return {
        "emb": lambda: embedding(token_ids),
        "input_layernorm": lambda: norm(x),
        "attn_pre_proj": lambda: qkv(x),
        "attn_rope": lambda: apply_rotary(query, key, cos, sin),
        "attn_post_proj": lambda: o_proj(attention_out),
        "post_attention_layernorm": lambda: norm(x),
        "mlp_up_proj": lambda: gate_up(x),
        "mlp_act": activation,
        "mlp_down_proj": lambda: down(activated),
        "add": lambda: x + residual,
        "lm_head": lambda: lm_head(x),
    }
