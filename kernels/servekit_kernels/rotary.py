"""Rotary position embedding in the GPT-NeoX "rotate half" layout Llama checkpoints use, applied
in place to a step's queries and keys, each token at its own position.

The frequencies come in as `inv_freq` `[head_dim // 2]` float32, so any scaling (linear, Llama
3's) is the caller's table; angles `position * inv_freq` and their cosines and sines are computed
in float32 inside the kernel, and the rotated values are rounded once to the input dtype.
"""

import torch
import triton
import triton.language as tl

from servekit_kernels._tiles import check_dtype, padded


def rotary_embedding_reference(
    query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """New tensors: `query` `[num_tokens, num_heads, head_dim]` and `key` `[num_tokens,
    num_kv_heads, head_dim]` rotated by `positions` `[num_tokens]`."""
    angles = positions.float()[:, None] * inv_freq.float()[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        first, second = x.float().chunk(2, dim=-1)
        return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1).to(x.dtype)

    return rotate(query), rotate(key)


@triton.jit
def _rotate_heads(ptr, token, stride_token, stride_head, cos, sin, num_heads, HALF: tl.constexpr,
                  HEADS_PAD: tl.constexpr, HALF_PAD: tl.constexpr):
    heads = tl.arange(0, HEADS_PAD)[:, None]
    columns = tl.arange(0, HALF_PAD)[None, :]
    mask = (heads < num_heads) & (columns < HALF)
    first_ptr = ptr + token * stride_token + heads * stride_head + columns
    first = tl.load(first_ptr, mask=mask, other=0.0).to(tl.float32)
    second = tl.load(first_ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    tl.store(first_ptr, (first * cos - second * sin).to(ptr.dtype.element_ty), mask=mask)
    tl.store(first_ptr + HALF, (second * cos + first * sin).to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_kernel(
    query_ptr,
    key_ptr,
    positions_ptr,
    inv_freq_ptr,
    stride_query_token,
    stride_query_head,
    stride_key_token,
    stride_key_head,
    num_heads,
    num_kv_heads,
    HALF: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    KV_HEADS_PAD: tl.constexpr,
    HALF_PAD: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    columns = tl.arange(0, HALF_PAD)
    position = tl.load(positions_ptr + token).to(tl.float32)
    angles = position * tl.load(inv_freq_ptr + columns, mask=columns < HALF, other=0.0)
    cos = tl.cos(angles)[None, :]
    sin = tl.sin(angles)[None, :]
    _rotate_heads(query_ptr, token, stride_query_token, stride_query_head, cos, sin, num_heads, HALF, HEADS_PAD, HALF_PAD)
    _rotate_heads(key_ptr, token, stride_key_token, stride_key_head, cos, sin, num_kv_heads, HALF, KV_HEADS_PAD, HALF_PAD)


def rotary_embedding(
    query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotates `query` and `key` in place (see `rotary_embedding_reference`) and returns them."""
    check_dtype("query", query)
    num_tokens, num_heads, head_dim = query.shape
    if key.dim() != 3 or key.shape[0] != num_tokens or key.shape[2] != head_dim or key.dtype != query.dtype:
        raise ValueError(f"key {tuple(key.shape)} {key.dtype} does not fit query {tuple(query.shape)} {query.dtype}")
    if head_dim % 2 or inv_freq.shape != (head_dim // 2,) or inv_freq.dtype != torch.float32:
        raise ValueError(f"inv_freq must be float32 [{head_dim // 2}] for head_dim {head_dim}, got {tuple(inv_freq.shape)}")
    if positions.shape != (num_tokens,):
        raise ValueError(f"positions must hold one position per token ({num_tokens}), got {tuple(positions.shape)}")
    if query.stride(2) != 1 or key.stride(2) != 1:
        raise ValueError("query and key must be contiguous in head_dim")
    if num_tokens:
        _rotary_kernel[(num_tokens,)](
            query,
            key,
            positions,
            inv_freq,
            query.stride(0),
            query.stride(1),
            key.stride(0),
            key.stride(1),
            num_heads,
            key.shape[1],
            HALF=head_dim // 2,
            HEADS_PAD=padded(num_heads),
            KV_HEADS_PAD=padded(key.shape[1]),
            HALF_PAD=padded(head_dim // 2),
        )
    return query, key
