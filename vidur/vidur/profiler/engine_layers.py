"""The MLP-side operators of the model's layers, run through the engine's own modules
(`engine.worker.model`) on one tensor-parallel rank's shard, as Vidur's `mlp.csv` names them.

Each sample is one pass through every layer in the engine's order (embedding; per layer: norm,
QKV, rotary, output projection, residual add, norm, gate/up, activation, down, residual add;
the LM head), each layer with weights of its own, and each operator timed where it runs in that
pass (CUDA events on a GPU, the clock on a CPU). Timing an operator in a loop of its own would
keep its weights in cache and the CPU's threads spinning, and come out several times faster than
the same operator inside the model's forward pass. Attention, which needs the KV cache, is left
out of the MLP-side rows and timed in the same passes, at each attention shape
(`engine_attention`).

The engine fuses each residual add into the RMSNorm after it; the table keeps Vidur's split
(`input_layernorm` and `post_attention_layernorm` the norm alone, `add` the sum it starts with),
so the operators add up to what the engine runs. `lm_head` is the engine's LM head over the
tokens (Vidur's tables have no such column; the predictor uses it when present). Row-parallel
projections and the embedding run as one rank's shard without their collectives, which the
network tables (or the ring model) add.
"""

from collections.abc import Callable
from typing import Any

from vidur.profiler.engine_attention import AttentionStep
from vidur.profiler.timer import Timer, laps
from vidur.profiles import EXTRA_OPERATORS, MLP_OPERATORS

OPERATORS = MLP_OPERATORS + EXTRA_OPERATORS


def _randomize(*modules: Any) -> None:
    import torch

    with torch.no_grad():
        for module in modules:
            for name, parameter in module.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                elif parameter.dim() > 1:
                    parameter.normal_(0.0, 0.02)


def _silu_and_mul(gate_up: Any) -> Any:
    """The engine's `GatedMLP` activation: silu(gate) * up."""
    import torch.nn.functional as F

    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class _Layer:
    """One layer's MLP-side modules on one rank."""

    def __init__(self, config: Any, tp: int, device: Any, dtype: Any) -> None:
        from engine.worker.model.layers.linear import ColumnParallelLinear, QKVParallelLinear, RowParallelLinear
        from engine.worker.model.layers.norm import RMSNorm
        from engine.worker.model.parallel import TensorParallel

        alone = TensorParallel(0, 1)
        self.qkv = QKVParallelLinear(
            config.hidden_size, config.head_dim, config.num_heads, config.num_kv_heads, bias=config.qkv_bias,
            tp=TensorParallel(0, tp),
        )
        self.o_proj = RowParallelLinear(
            self.qkv.num_local_heads * config.head_dim, config.hidden_size, bias=config.o_proj_bias, tp=alone
        )
        self.gate_up = ColumnParallelLinear(
            config.hidden_size, [config.intermediate_size] * 2, bias=config.mlp_bias, tp=TensorParallel(0, tp)
        )
        self.down = RowParallelLinear(config.intermediate_size // tp, config.hidden_size, bias=config.mlp_bias, tp=alone)
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        modules = (self.qkv, self.o_proj, self.gate_up, self.down, self.input_norm, self.post_norm)
        _randomize(*modules)
        for module in modules:
            module.to(device=device, dtype=dtype)
        self.split = [
            self.qkv.num_local_heads * config.head_dim,
            self.qkv.num_local_kv_heads * config.head_dim,
            self.qkv.num_local_kv_heads * config.head_dim,
        ]


class LayerStack:
    """The model's layers (MLP side), embedding and LM head on one rank of `tp`, built once and
    run at any token count."""

    def __init__(self, config: Any, tp: int, device: Any, dtype: Any) -> None:
        from engine.worker.model.layers.rotary import RotaryEmbedding
        from engine.worker.model.layers.vocab import ParallelLMHead, VocabParallelEmbedding
        from engine.worker.model.parallel import TensorParallel

        alone = TensorParallel(0, 1)
        self.config, self.device, self.dtype = config, device, dtype
        self.layers = [_Layer(config, tp, device, dtype) for _ in range(config.num_layers)]
        self.rows_per_rank = -(-config.vocab_size // tp)
        self.embedding = VocabParallelEmbedding(self.rows_per_rank, config.hidden_size, tp=alone)
        self.lm_head = ParallelLMHead(self.rows_per_rank, config.hidden_size, tp=alone, tied_to=None)
        self.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope)
        _randomize(self.embedding, self.lm_head)
        for module in (self.embedding, self.lm_head):
            module.to(device=device, dtype=dtype)
        self.rotary.to(device=device)  # its tables stay float32, as in the engine

    def time(self, num_tokens: int, timer: Timer, attention: "AttentionStep | None" = None) -> dict[str, list[float]]:
        """Milliseconds of each operator, one sample per layer per pass (two per layer for `add`).
        With `attention` (a step of `num_tokens` tokens), each layer runs it between the rotary
        embedding and the output projection, as the engine does, timed as `kv_save` (the cache
        write alone) and `attention` (the backend's whole call, its own write included)."""
        import torch
        import torch.nn.functional as F

        from engine.worker.model.layers.rotary import apply_rotary

        config, device, dtype = self.config, self.device, self.dtype
        head_dim = config.head_dim
        token_ids = torch.randint(0, self.rows_per_rank, (num_tokens,), device=device)
        positions = torch.arange(num_tokens, device=device) % config.max_position_embeddings
        cos, sin = self.rotary(positions, dtype)
        attention_out = torch.randn(num_tokens, self.layers[0].split[0], device=device, dtype=dtype)

        def one_pass(lap: Callable[[str, Callable[[], Any]], Any]) -> None:
            hidden = lap("emb", lambda: self.embedding(token_ids))
            residual = torch.zeros_like(hidden)
            for index, layer in enumerate(self.layers):
                summed = lap("add", lambda: hidden + residual)
                normed, _ = lap("input_layernorm", lambda: layer.input_norm(summed))
                qkv = lap("attn_pre_proj", lambda: layer.qkv(normed))
                query, key, _ = qkv.split(layer.split, dim=-1)
                query = query.view(num_tokens, -1, head_dim)
                key = key.view(num_tokens, -1, head_dim)
                rotated = lap("attn_rope", lambda: apply_rotary(query, key, cos, sin))
                if attention is not None:
                    lap("kv_save", lambda: attention.save(index))
                    lap("attention", lambda: attention.run(index, *rotated))
                attended = lap("attn_post_proj", lambda: layer.o_proj(attention_out))
                residual = lap("add", lambda: attended + summed)
                normed, _ = lap("post_attention_layernorm", lambda: layer.post_norm(residual))
                gate_up = lap("mlp_up_proj", lambda: layer.gate_up(normed))
                activated = lap("mlp_act", lambda: _silu_and_mul(gate_up))
                hidden = lap("mlp_down_proj", lambda: layer.down(activated))
            lap("lm_head", lambda: self.lm_head(hidden))

        with torch.inference_mode():
            return laps(timer, one_pass)
