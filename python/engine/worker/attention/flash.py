"""flash-attn 2's variable-length kernel (`flash_attn_varlen_func`), on CUDA, when installed.

One call covers the whole mixed batch: causal masking in flash-attn aligns to the bottom right,
which is exactly "a chunk's queries are the last tokens of the context". flash-attn reads a paged
cache directly only when the block size is a multiple of 256; with smaller blocks the contexts
are gathered into contiguous keys and values first (one index_select per layer of every
request's whole context, decodes included: serve flash with a block size of 256).
"""

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from engine.worker.attention.backend import AttentionBackend, AttentionLayer, write_kv
from engine.worker.attention.metadata import AttentionMetadata

PAGED_BLOCK_MULTIPLE = 256
# flash-attn 2 runs on Ampere (compute capability 8.0) and newer GPUs.
MIN_CAPABILITY = (8, 0)


def is_flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def flash_unsupported_reason(device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why flash-attn cannot run this model here, or None when it can."""
    if device.type != "cuda":
        return f"it runs on CUDA only, not on {device.type}"
    if not is_flash_attn_available():
        return "the flash_attn package is not installed"
    return flash_kernel_unsupported_reason(torch.cuda.get_device_capability(device), dtype, head_dim)


def flash_kernel_unsupported_reason(capability: tuple[int, int], dtype: torch.dtype, head_dim: int) -> str | None:
    """Why flash-attn's kernel cannot run this model on a GPU of this compute capability, or None."""
    if tuple(capability) < MIN_CAPABILITY:
        return f"it needs a GPU of compute capability 8.0 or newer, not {capability[0]}.{capability[1]}"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"it takes float16 or bfloat16 only, not {dtype}"
    if head_dim % 8 or head_dim > 256:
        return f"it needs a head_dim that is a multiple of 8 up to 256, not {head_dim}"
    return None


@dataclass(frozen=True, slots=True)
class FlashPlan:
    metadata: AttentionMetadata
    """[sum(seq_lens)] int64 context slots, request after request; None when reading pages directly."""
    context_slots: torch.Tensor | None


class FlashAttention(AttentionBackend[FlashPlan]):
    name = "flash"

    def __init__(self, device: torch.device, dtype: torch.dtype, head_dim: int, block_size: int) -> None:
        reason = flash_unsupported_reason(device, dtype, head_dim)
        if reason is not None:
            raise ValueError(f"attention backend 'flash' cannot run: {reason}")
        from flash_attn import flash_attn_varlen_func

        self._varlen: Any = flash_attn_varlen_func
        self.reads_pages = block_size % PAGED_BLOCK_MULTIPLE == 0

    def prepare(self, metadata: AttentionMetadata) -> FlashPlan:
        if self.reads_pages:
            return FlashPlan(metadata, None)
        slots = torch.from_numpy(metadata.context_slots()).to(metadata.slot_mapping.device, non_blocking=True)
        return FlashPlan(metadata, slots)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        plan: FlashPlan,
        layer: AttentionLayer,
    ) -> torch.Tensor:
        metadata = plan.metadata
        write_kv(key, value, kv_cache, metadata.slot_mapping)
        window = (-1, -1) if layer.sliding_window is None else (layer.sliding_window - 1, 0)
        if plan.context_slots is None:
            keys, values, block_table = kv_cache[0], kv_cache[1], metadata.block_tables
        else:
            keys = kv_cache[0].view(-1, layer.num_kv_heads, layer.head_dim).index_select(0, plan.context_slots)
            values = kv_cache[1].view(-1, layer.num_kv_heads, layer.head_dim).index_select(0, plan.context_slots)
            block_table = None
        output: torch.Tensor = self._varlen(
            query,
            keys,
            values,
            cu_seqlens_q=metadata.query_start_loc,
            cu_seqlens_k=metadata.seq_start_loc,
            max_seqlen_q=metadata.max_query_len,
            max_seqlen_k=metadata.max_seq_len,
            softmax_scale=layer.scale,
            causal=True,
            window_size=window,
            block_table=block_table,
        )
        return output
