"""Decode attention over the paged KV cache: one query token per sequence, its keys and values
read through the sequence's block table.

Layout (the engine's): `key_cache`, `value_cache` `[num_blocks, block_size, num_kv_heads,
head_dim]`; `block_tables` `[num_seqs, max_blocks]` int32, row `i` listing the blocks of
sequence `i` in order; `seq_lens` `[num_seqs]` int32, the context length including the query
token (whose key and value are already in the cache). Query head `h` reads KV head
`h // (num_heads // num_kv_heads)` (grouped- and multi-query attention). With a sliding window
a query sees only the last `sliding_window` keys. A sequence of length 0 (a padded row) gets zeros.

Flash-decoding: the context of each sequence is split into `num_splits` ranges of whole tiles
that separate programs attend to (so one long sequence still fills the GPU), each keeping its running maximum
and sum of exponentials; a second kernel merges the ranges. The grid depends only on the batch
size and `num_splits`, never on the lengths, so a captured CUDA graph replays it for any lengths.
"""

import math

import torch
import triton
import triton.language as tl

from servekit_kernels._kv_tile import load_kv_tile, online_softmax_step
from servekit_kernels._tiles import MIN_DOT, check_paged_attention, dot_precision, padded

TILE = 64
# Splits shorter than this do not pay for their share of the merge.
MIN_SPLIT_TOKENS = 256


def paged_decode_attention_reference(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """One sequence at a time, its context gathered block by block, softmax in float32."""
    num_heads, num_kv_heads = query.shape[1], key_cache.shape[2]
    block_size = key_cache.shape[1]
    output = torch.zeros_like(query)
    for row, seq_len in enumerate(seq_lens.tolist()):
        if seq_len == 0:
            continue
        blocks = block_tables[row, : -(-seq_len // block_size)].long()
        keys = key_cache[blocks].flatten(0, 1)[:seq_len].float()
        values = value_cache[blocks].flatten(0, 1)[:seq_len].float()
        first = 0 if sliding_window is None else max(0, seq_len - sliding_window)
        keys = keys[first:].repeat_interleave(num_heads // num_kv_heads, dim=1)
        values = values[first:].repeat_interleave(num_heads // num_kv_heads, dim=1)
        scores = torch.einsum("hd,khd->hk", query[row].float(), keys) * scale
        output[row] = torch.einsum("hk,khd->hd", torch.softmax(scores, dim=-1), values).to(query.dtype)
    return output


def default_num_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, num_programs: int) -> int:
    """Enough splits that `num_seqs * num_kv_heads * splits` programs reach `num_programs` (about
    two per streaming multiprocessor), and no more than `max_seq_len` (the longest context the
    batch may hold, e.g. the model's maximum) cuts into ranges of MIN_SPLIT_TOKENS."""
    wanted = math.ceil(num_programs / max(1, num_seqs * num_kv_heads))
    return max(1, min(wanted, math.ceil(max_seq_len / MIN_SPLIT_TOKENS)))


@triton.jit
def _decode_split_kernel(
    query_ptr,
    key_cache_ptr,
    value_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    output_ptr,
    partial_output_ptr,
    partial_max_ptr,
    partial_sum_ptr,
    scale_log2,
    sliding_window,
    num_splits,
    stride_query_seq,
    stride_query_head,
    stride_output_seq,
    stride_output_head,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    stride_table_row,
    block_size,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DIM_PAD: tl.constexpr,
    TILE_SIZE: tl.constexpr,
    SINGLE_SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + seq)
    start = 0
    if sliding_window > 0:
        start = tl.maximum(seq_len - sliding_window, 0)
    end = seq_len
    if not SINGLE_SPLIT:
        # Ranges of whole tiles; the last splits of a short context stay empty.
        tiles_per_split = ((seq_len - start + TILE_SIZE - 1) // TILE_SIZE + num_splits - 1) // num_splits
        start += split * tiles_per_split * TILE_SIZE
        end = tl.minimum(start + tiles_per_split * TILE_SIZE, seq_len)

    heads = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, DIM_PAD)
    head_mask = heads < GROUP
    dim_mask = dims < HEAD_DIM
    query_heads = kv_head * GROUP + heads
    query = tl.load(
        query_ptr + seq * stride_query_seq + query_heads[:, None] * stride_query_head + dims[None, :],
        mask=head_mask[:, None] & dim_mask[None, :],
        other=0.0,
    )
    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUP_PAD], tl.float32)
    accumulated = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
    key_base = key_cache_ptr + kv_head * stride_cache_head + dims[None, :]
    value_base = value_cache_ptr + kv_head * stride_cache_head + dims[None, :]
    table = block_tables_ptr + seq * stride_table_row
    for tile_start in range(start, end, TILE_SIZE):
        positions = tile_start + tl.arange(0, TILE_SIZE)
        valid = positions < end
        keys, values = load_kv_tile(
            key_base, value_base, table, positions, valid, dim_mask, block_size, stride_cache_block, stride_cache_slot
        )
        scores = tl.dot(query, tl.trans(keys), input_precision=PRECISION) * scale_log2
        scores = tl.where(valid[None, :], scores, float("-inf"))
        running_max, running_sum, accumulated = online_softmax_step(
            scores, values, running_max, running_sum, accumulated, PRECISION
        )

    if SINGLE_SPLIT:
        normalized = accumulated / tl.where(running_sum > 0, running_sum, 1.0)[:, None]
        tl.store(
            output_ptr + seq * stride_output_seq + query_heads[:, None] * stride_output_head + dims[None, :],
            normalized.to(output_ptr.dtype.element_ty),
            mask=head_mask[:, None] & dim_mask[None, :],
        )
    else:
        # partials: [num_seqs, num_heads, num_splits(, DIM_PAD)], float32
        row = (seq * GROUP * tl.num_programs(1) + query_heads) * num_splits + split
        tl.store(partial_max_ptr + row, running_max, mask=head_mask)
        tl.store(partial_sum_ptr + row, running_sum, mask=head_mask)
        tl.store(partial_output_ptr + row[:, None] * DIM_PAD + dims[None, :], accumulated, mask=head_mask[:, None])


@triton.jit
def _decode_merge_kernel(
    output_ptr,
    partial_output_ptr,
    partial_max_ptr,
    partial_sum_ptr,
    num_splits,
    stride_output_seq,
    stride_output_head,
    HEAD_DIM: tl.constexpr,
    DIM_PAD: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    dims = tl.arange(0, DIM_PAD)
    rows = (seq * tl.num_programs(1) + head) * num_splits + splits
    present = splits < num_splits
    maxima = tl.load(partial_max_ptr + rows, mask=present, other=float("-inf"))
    sums = tl.load(partial_sum_ptr + rows, mask=present, other=0.0)
    outputs = tl.load(partial_output_ptr + rows[:, None] * DIM_PAD + dims[None, :], mask=present[:, None], other=0.0)
    overall_max = tl.max(maxima, axis=0)
    overall_max = tl.where(overall_max == float("-inf"), 0.0, overall_max)  # an empty sequence
    weights = tl.exp2(maxima - overall_max)
    total = tl.sum(sums * weights, axis=0)
    merged = tl.sum(outputs * weights[:, None], axis=0) / tl.where(total > 0, total, 1.0)
    tl.store(
        output_ptr + seq * stride_output_seq + head * stride_output_head + dims,
        merged.to(output_ptr.dtype.element_ty),
        mask=dims < HEAD_DIM,
    )


def paged_decode_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    num_splits: int = 1,
    output: torch.Tensor | None = None,
) -> torch.Tensor:
    """`query` `[num_seqs, num_heads, head_dim]`; returns (or fills `output`, same shape) the
    attention of each query over its sequence's context. See the module docstring."""
    check_paged_attention(query, key_cache, value_cache)
    num_seqs, num_heads, head_dim = query.shape
    num_kv_heads = key_cache.shape[2]
    if block_tables.dim() != 2 or block_tables.shape[0] != num_seqs or seq_lens.shape != (num_seqs,):
        raise ValueError(
            f"block_tables {tuple(block_tables.shape)} and seq_lens {tuple(seq_lens.shape)} "
            f"must have one row per sequence ({num_seqs})"
        )
    if num_splits < 1:
        raise ValueError(f"num_splits must be at least 1, got {num_splits}")
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be at least 1 or None, got {sliding_window}")
    if output is None:
        output = torch.empty_like(query)
    if num_seqs == 0:
        return output
    group = num_heads // num_kv_heads
    dim_pad = padded(head_dim, MIN_DOT)
    partial_output = partial_max = partial_sum = output  # unused with one split
    if num_splits > 1:
        partial_max = torch.empty((num_seqs, num_heads, num_splits), dtype=torch.float32, device=query.device)
        partial_sum = torch.empty_like(partial_max)
        partial_output = torch.empty((*partial_max.shape, dim_pad), dtype=torch.float32, device=query.device)
    _decode_split_kernel[(num_seqs, num_kv_heads, num_splits)](
        query,
        key_cache,
        value_cache,
        block_tables,
        seq_lens,
        output,
        partial_output,
        partial_max,
        partial_sum,
        scale * math.log2(math.e),
        sliding_window or 0,
        num_splits,
        query.stride(0),
        query.stride(1),
        output.stride(0),
        output.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        block_tables.stride(0),
        key_cache.shape[1],
        GROUP=group,
        GROUP_PAD=padded(group, MIN_DOT),
        HEAD_DIM=head_dim,
        DIM_PAD=dim_pad,
        TILE_SIZE=TILE,
        SINGLE_SPLIT=num_splits == 1,
        PRECISION=dot_precision(query.dtype),
    )
    if num_splits > 1:
        _decode_merge_kernel[(num_seqs, num_heads)](
            output,
            partial_output,
            partial_max,
            partial_sum,
            num_splits,
            output.stride(0),
            output.stride(1),
            HEAD_DIM=head_dim,
            DIM_PAD=dim_pad,
            SPLITS_PAD=padded(num_splits),
        )
    return output
