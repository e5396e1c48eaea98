"""Writing a step's new keys and values into the paged KV cache.

The cache of one layer is `key_cache`, `value_cache`: `[num_blocks, block_size, num_kv_heads,
head_dim]` each (the engine's `kv_cache[0]` and `kv_cache[1]`). Token `t` goes to slot
`slot_mapping[t]` = block id * block_size + offset in the block; a negative slot (a padded row)
writes nothing.
"""

import torch
import triton
import triton.language as tl

from servekit_kernels._tiles import padded


def write_kv_cache_reference(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    kept = slot_mapping >= 0
    slots = slot_mapping[kept].long()
    key_cache.view(-1, *key_cache.shape[2:])[slots] = key[kept]
    value_cache.view(-1, *value_cache.shape[2:])[slots] = value[kept]


TOKENS_PER_PROGRAM = 16


@triton.jit
def _write_kv_cache_kernel(
    key_ptr,
    value_ptr,
    key_cache_ptr,
    value_cache_ptr,
    slot_mapping_ptr,
    num_tokens,
    stride_key_token,
    stride_key_head,
    stride_value_token,
    stride_value_head,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    block_size,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    DIM_PAD: tl.constexpr,
    TOKENS: tl.constexpr,
):
    # Row: a token; column c: element c % DIM_PAD of KV head c // DIM_PAD.
    tokens = tl.program_id(0) * TOKENS + tl.arange(0, TOKENS)
    slots = tl.load(slot_mapping_ptr + tokens, mask=tokens < num_tokens, other=-1).to(tl.int64)
    columns = tl.arange(0, HEADS_PAD * DIM_PAD)
    heads = columns // DIM_PAD
    dims = columns % DIM_PAD
    mask = (slots >= 0)[:, None] & ((heads < NUM_KV_HEADS) & (dims < HEAD_DIM))[None, :]
    destination = ((slots // block_size) * stride_cache_block + (slots % block_size) * stride_cache_slot)[:, None]
    destination += (heads * stride_cache_head + dims)[None, :]
    rows = tokens.to(tl.int64)[:, None]
    key = tl.load(key_ptr + rows * stride_key_token + (heads * stride_key_head + dims)[None, :], mask=mask)
    value = tl.load(value_ptr + rows * stride_value_token + (heads * stride_value_head + dims)[None, :], mask=mask)
    tl.store(key_cache_ptr + destination, key, mask=mask)
    tl.store(value_cache_ptr + destination, value, mask=mask)


def write_kv_cache(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """`key`, `value`: `[num_tokens, num_kv_heads, head_dim]` (rows may be strided, as slices of a
    fused QKV projection are); the caches as described above, contiguous in their last two dims."""
    num_tokens, num_kv_heads, head_dim = key.shape
    if value.shape != key.shape or key_cache.shape[2:] != key.shape[1:] or value_cache.shape != key_cache.shape:
        raise ValueError(
            f"key {tuple(key.shape)} and value {tuple(value.shape)} do not fit caches "
            f"{tuple(key_cache.shape)} / {tuple(value_cache.shape)}"
        )
    if slot_mapping.shape != (num_tokens,):
        raise ValueError(f"slot_mapping must hold one slot per token ({num_tokens}), got {tuple(slot_mapping.shape)}")
    if key.stride(2) != 1 or value.stride(2) != 1 or key_cache.stride(3) != 1 or key_cache.stride() != value_cache.stride():
        raise ValueError("key, value and the caches must be contiguous in head_dim, the caches laid out alike")
    if num_tokens == 0:
        return
    _write_kv_cache_kernel[(triton.cdiv(num_tokens, TOKENS_PER_PROGRAM),)](
        key,
        value,
        key_cache,
        value_cache,
        slot_mapping,
        num_tokens,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        key_cache.shape[1],
        NUM_KV_HEADS=num_kv_heads,
        HEAD_DIM=head_dim,
        HEADS_PAD=padded(num_kv_heads),
        DIM_PAD=padded(head_dim),
        TOKENS=TOKENS_PER_PROGRAM,
    )
