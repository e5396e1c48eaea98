"""Attention over a paged KV cache, behind one interface (`AttentionBackend`).

Backends: `reference` (plain PyTorch, one request at a time: the correctness baseline), `sdpa`
(PyTorch's scaled_dot_product_attention, any device), `flash` (flash-attn 2 on CUDA GPUs of
compute capability 8.0 or newer, when installed; 16-bit data, head_dim a multiple of 8 up to
256) and `triton` (this repository's kernels, `servekit_kernels`, reading the paged cache
directly; CUDA, or the CPU under TRITON_INTERPRET=1). `auto` picks flash when it can run, else
triton on CUDA when it can run, else sdpa. The triton backend's package is imported only when
that backend is chosen.
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
from engine.worker.attention.triton_attention import TritonAttention, triton_unsupported_reason
from engine.wire.runner_config import ATTENTION_BACKENDS as BACKENDS


def select_backend(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    head_dim: int,
    block_size: int,
    max_model_len: int | None = None,
) -> AttentionBackend[Any]:
    """`max_model_len`: the longest context a step may hold (the triton backend sizes its decode
    splits by it, so they stay the same from step to step; None: by each step's longest)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: expected one of {BACKENDS}")
    if name == "auto":
        name = auto_backend_name(device, dtype, head_dim)
    if name == "flash":
        return FlashAttention(device, dtype, head_dim, block_size)
    if name == "triton":
        return TritonAttention(device, dtype, head_dim, max_model_len)
    if name == "reference":
        return ReferenceAttention()
    return SdpaAttention()


def auto_backend_name(device: torch.device, dtype: torch.dtype, head_dim: int) -> str:
    """What `auto` picks: flash, else triton on CUDA, else sdpa."""
    if flash_unsupported_reason(device, dtype, head_dim) is None:
        return "flash"
    if device.type == "cuda" and triton_unsupported_reason(device, dtype, head_dim) is None:
        return "triton"
    return "sdpa"


__all__ = [
    "BACKENDS",
    "AttentionBackend",
    "AttentionLayer",
    "AttentionMetadata",
    "DecodeInputs",
    "FlashAttention",
    "ReferenceAttention",
    "SdpaAttention",
    "TritonAttention",
    "auto_backend_name",
    "kv_cache_shape",
    "select_backend",
    "write_kv",
]
