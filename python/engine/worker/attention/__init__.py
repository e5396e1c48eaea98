"""Attention over a paged KV cache, behind one interface (`AttentionBackend`).

Backends: `reference` (plain PyTorch, one request at a time: the correctness baseline), `sdpa`
(PyTorch's scaled_dot_product_attention, any device) and `flash` (flash-attn 2 on CUDA GPUs of
compute capability 8.0 or newer, when installed; 16-bit data, head_dim a multiple of 8 up to
256). `auto` picks flash when it can run, else sdpa.
"""

from typing import Any

import torch

from engine.worker.attention.backend import (
    AttentionBackend,
    AttentionLayer,
    DecodeInputs,
    kv_cache_shape,
    write_kv,
)
from engine.worker.attention.flash import FlashAttention, flash_unsupported_reason
from engine.worker.attention.metadata import AttentionMetadata
from engine.worker.attention.reference import ReferenceAttention
from engine.worker.attention.sdpa import SdpaAttention
from engine.wire.runner_config import ATTENTION_BACKENDS as BACKENDS


def select_backend(
    name: str, *, device: torch.device, dtype: torch.dtype, head_dim: int, block_size: int
) -> AttentionBackend[Any]:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: expected one of {BACKENDS}")
    if name == "auto":
        name = "flash" if flash_unsupported_reason(device, dtype, head_dim) is None else "sdpa"
    if name == "flash":
        return FlashAttention(device, dtype, head_dim, block_size)
    if name == "reference":
        return ReferenceAttention()
    return SdpaAttention()


__all__ = [
    "BACKENDS",
    "AttentionBackend",
    "AttentionLayer",
    "AttentionMetadata",
    "DecodeInputs",
    "FlashAttention",
    "ReferenceAttention",
    "SdpaAttention",
    "kv_cache_shape",
    "select_backend",
    "write_kv",
]
