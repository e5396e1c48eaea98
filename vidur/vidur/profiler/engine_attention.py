"""Attention through the engine's own backends (`engine.worker.attention`: the one
`--attention-backend` picks), over its paged KV cache, one layer on one rank's heads.

Each call is what one layer runs for a step: the backend's `forward` writes the new keys and
values into the cache, then attends. The table splits it as the simulator charges it:
`attn_kv_cache_save` the write alone, `attn_prefill` / `attn_decode` the rest (the forward's
median less the write's). The backend's per-step preparation (`prepare`, shared by every layer)
is not a layer's: it is part of the workers' input preparation, which the engine's iteration log
measures (`vidur fit-overheads`).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class AttentionCall:
    """`num_seqs` sequences, each running `num_tokens` queries after `num_context` cached tokens."""

    num_seqs: int
    num_tokens: int
    num_context: int


@dataclass(frozen=True, slots=True)
class AttentionTiming:
    forward: list[float]
    kv_save: list[float]


class EngineAttention:
    def __init__(self, config: Any, tp: int, backend_name: str, block_size: int, device: Any, dtype: Any) -> None:
        from engine.worker.attention import AttentionLayer, select_backend

        self.device, self.dtype, self.block_size = device, dtype, block_size
        self.head_dim = config.head_dim
        self.num_heads = config.num_heads // tp
        self.num_kv_heads = max(config.num_kv_heads // tp, 1)
        self.backend = select_backend(backend_name, device=device, dtype=dtype, head_dim=config.head_dim,
                                      block_size=block_size)
        self.layer = AttentionLayer(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim**-0.5)

    @property
    def backend_name(self) -> str:
        return str(self.backend.name)

    def time(self, call: AttentionCall, timer: Any) -> AttentionTiming:
        import torch

        from engine.worker.attention import AttentionMetadata, kv_cache_shape, write_kv

        seq_len = call.num_context + call.num_tokens
        blocks_per_seq = -(-seq_len // self.block_size)
        tables = np.arange(call.num_seqs * blocks_per_seq, dtype=np.int64).reshape(call.num_seqs, blocks_per_seq)
        metadata = AttentionMetadata.build(
            query_lens=[call.num_tokens] * call.num_seqs,
            seq_lens=[seq_len] * call.num_seqs,
            block_tables=tables,
            block_size=self.block_size,
            device=self.device,
        )
        shape = kv_cache_shape(tables.size, self.block_size, self.num_kv_heads, self.head_dim)
        cache = torch.randn(shape, device=self.device, dtype=self.dtype)
        num_tokens = call.num_seqs * call.num_tokens
        query = torch.randn(num_tokens, self.num_heads, self.head_dim, device=self.device, dtype=self.dtype)
        key = torch.randn(num_tokens, self.num_kv_heads, self.head_dim, device=self.device, dtype=self.dtype)
        value = torch.randn_like(key)
        prepared = self.backend.prepare(metadata)
        with torch.inference_mode():
            forward = timer.milliseconds(
                lambda: self.backend.forward(query, key, value, cache, prepared, self.layer)
            )
            kv_save = timer.milliseconds(lambda: write_kv(key, value, cache, metadata.slot_mapping))
        return AttentionTiming(forward, kv_save)
