"""The one interface every attention implementation serves.

Per layer, the KV cache is one tensor `[2, num_blocks, block_size, num_kv_heads, head_dim]`
(keys at index 0, values at 1). `forward` first writes the new tokens' keys and values into their
slots, then computes each request's new queries against its whole cached context: causal inside
the chunk, optionally limited to a sliding window. Inputs and output are flattened over the
step's tokens: query and output `[num_tokens, num_heads, head_dim]`, key and value
`[num_tokens, num_kv_heads, head_dim]`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import torch

from engine.worker.attention.metadata import AttentionMetadata


@dataclass(frozen=True, slots=True)
class AttentionLayer:
    """A layer's attention shape on this rank."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    scale: float
    """A query sees at most this many keys (itself included); None: the whole context."""
    sliding_window: int | None = None


PreparedT = TypeVar("PreparedT")


@dataclass(frozen=True, slots=True)
class DecodeInputs:
    """A decode-only batch in fixed shapes, as a CUDA graph replays it: one query token per row,
    every tensor on the device (nothing read on the host, so no synchronization)."""

    block_size: int
    """[rows] int64: the cache slot each row's new key and value go to."""
    slot_mapping: torch.Tensor
    """[rows] int32: each row's context length, its new token included."""
    seq_lens: torch.Tensor
    """[rows, width] int32: each row's block table, padded to a fixed width."""
    block_tables: torch.Tensor


class AttentionBackend(ABC, Generic[PreparedT]):
    name: ClassVar[str]
    """Whether `prepare_decode` is implemented: its decode runs in fixed shapes, so it can be
    captured in a CUDA graph."""
    captures_decode: ClassVar[bool] = False
    """Whether its decode reads the block tables' pages in place (its cost does not grow with the
    table width) rather than gathering every row's whole table."""
    decode_reads_pages: ClassVar[bool] = False

    @abstractmethod
    def prepare(self, metadata: AttentionMetadata) -> PreparedT:
        """Per-step work shared by every layer (index tensors, masks); its result reaches `forward`."""

    def prepare_decode(self, decode: DecodeInputs) -> PreparedT:
        """`prepare` for a decode-only batch of fixed shapes, from device tensors alone (it runs
        inside a captured CUDA graph); only backends with `captures_decode` have it."""
        raise NotImplementedError(f"attention backend {self.name!r} cannot run a captured decode")

    @abstractmethod
    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        prepared: PreparedT,
        layer: AttentionLayer,
    ) -> torch.Tensor: ...


def kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int) -> tuple[int, ...]:
    return (2, num_blocks, block_size, num_kv_heads, head_dim)


def write_kv(key: torch.Tensor, value: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Stores each new token's key and value at its slot (block id * block_size + offset)."""
    num_kv_heads, head_dim = kv_cache.shape[-2:]
    kv_cache[0].view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, key)
    kv_cache[1].view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, value)
