"""Attention over a paged KV cache, behind one interface (`AttentionBackend`).

Backends: `reference` (plain PyTorch, one request at a time: the correctness baseline), `sdpa`
(PyTorch's scaled_dot_product_attention, any device) and `flash` (flash-attn 2 on CUDA, when
installed). `auto` picks flash when it can run, else sdpa.
"""

from typing import Any

import torch

from engine.attention.backend import AttentionBackend, AttentionLayer, kv_cache_shape, write_kv
from engine.attention.flash import FlashAttention, is_flash_attn_available
from engine.attention.metadata import AttentionMetadata
from engine.attention.reference import ReferenceAttention
from engine.attention.sdpa import SdpaAttention

BACKENDS = ("auto", "reference", "sdpa", "flash")


def select_backend(name: str, device: torch.device, block_size: int) -> AttentionBackend[Any]:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: expected one of {BACKENDS}")
    if name == "auto":
        name = "flash" if device.type == "cuda" and is_flash_attn_available() else "sdpa"
    if name == "flash":
        if device.type != "cuda":
            raise ValueError(f"attention backend 'flash' runs on CUDA only, not on {device.type}")
        return FlashAttention(block_size)
    if name == "reference":
        return ReferenceAttention()
    return SdpaAttention()


__all__ = [
    "BACKENDS",
    "AttentionBackend",
    "AttentionLayer",
    "AttentionMetadata",
    "FlashAttention",
    "ReferenceAttention",
    "SdpaAttention",
    "kv_cache_shape",
    "select_backend",
    "write_kv",
]
