"""Attention through the engine's own backends (`engine.worker.attention`: the one
`--attention-backend` picks), over its paged KV cache, on one rank's heads.

An `AttentionStep` is one step's attention for every layer, timed inside passes through the
layers (`engine_layers.LayerStack`), each layer over its own KV cache: the backend's `forward`
writes the new keys and values into the cache, then attends. The table splits it as the
simulator charges it: `attn_kv_cache_save` the write alone, `attn_prefill` / `attn_decode` the
rest (the forward's median less the write's). The backend's per-step preparation (`prepare`,
shared by every layer) is not a layer's: it is part of the workers' input preparation, which
the engine's iteration log measures (`vidur fit-overheads`).
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The KV caches one attention call's layers take turns on (see `AttentionStep`).
CACHE_BUDGET_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class AttentionCall:
    """`num_seqs` sequences, each running `num_tokens` queries after `num_context` cached tokens."""

    num_seqs: int
    num_tokens: int
    num_context: int


class AttentionStep:
    """One attention call's inputs for every layer: the step's metadata, the backend's
    preparation, and a KV cache per layer (as many as fit in `CACHE_BUDGET_BYTES`, at least one,
    the layers taking turns), so no layer finds the previous one's keys in cache."""

    def __init__(self, attention: "EngineAttention", call: AttentionCall) -> None:
        import torch

        from engine.worker.attention import AttentionMetadata, kv_cache_shape

        self.attention = attention
        seq_len = call.num_context + call.num_tokens
        blocks_per_seq = -(-seq_len // attention.block_size)
        tables = np.arange(call.num_seqs * blocks_per_seq, dtype=np.int64).reshape(call.num_seqs, blocks_per_seq)
        self.metadata = AttentionMetadata.build(
            query_lens=[call.num_tokens] * call.num_seqs,
            seq_lens=[seq_len] * call.num_seqs,
            block_tables=tables,
            block_size=attention.block_size,
            device=attention.device,
        )
        shape = kv_cache_shape(tables.size, attention.block_size, attention.num_kv_heads, attention.head_dim)
        cache_bytes = math.prod(shape) * torch.empty((), dtype=attention.dtype).element_size()
        num_caches = max(1, min(attention.num_layers, CACHE_BUDGET_BYTES // max(cache_bytes, 1)))
        self.caches = [torch.randn(shape, device=attention.device, dtype=attention.dtype) for _ in range(num_caches)]
        num_tokens = call.num_seqs * call.num_tokens
        self.value = torch.randn(
            num_tokens, attention.num_kv_heads, attention.head_dim, device=attention.device, dtype=attention.dtype
        )
        self.key = torch.randn_like(self.value)
        self.prepared = attention.backend.prepare(self.metadata)

    def save(self, layer: int) -> None:
        from engine.worker.attention import write_kv

        write_kv(self.key, self.value, self.caches[layer % len(self.caches)], self.metadata.slot_mapping)

    def run(self, layer: int, query: Any, key: Any) -> Any:
        attention = self.attention
        cache = self.caches[layer % len(self.caches)]
        return attention.backend.forward(query, key, self.value, cache, self.prepared, attention.layer)


class EngineAttention:
    def __init__(self, config: Any, tp: int, backend_name: str, block_size: int, device: Any, dtype: Any) -> None:
        from engine.worker.attention import AttentionLayer, select_backend

        self.device, self.dtype, self.block_size = device, dtype, block_size
        self.head_dim = config.head_dim
        self.num_heads = config.num_heads // tp
        self.num_kv_heads = max(config.num_kv_heads // tp, 1)
        self.num_layers = config.num_layers
        self.backend = select_backend(backend_name, device=device, dtype=dtype, head_dim=config.head_dim,
                                      block_size=block_size)
        self.layer = AttentionLayer(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim**-0.5)

    @property
    def backend_name(self) -> str:
        return str(self.backend.name)
