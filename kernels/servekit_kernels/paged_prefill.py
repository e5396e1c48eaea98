"""Prefill attention over the paged KV cache, for chunked prefill: each request's chunk of
queries attends to its cached context and, causally, to itself, many requests of different
lengths in one launch.

Layout as in `paged_decode`; the queries of all requests are flattened, request `i` owning rows
`query_start_loc[i] : query_start_loc[i + 1]` of `query` `[num_tokens, num_heads, head_dim]`.
They are the last tokens of its `seq_lens[i]`-token context, whose keys and values (the chunk's
own included) are already in the cache: query `j` sits at position `seq_lens[i] - query_len + j`
and sees the keys at positions up to its own (and, with a sliding window, only the last
`sliding_window` of those).

Each program takes BLOCK_Q query tokens of one request and one KV head, with all the query heads
that share that KV head, so every key tile is loaded once per group. `prefill_tiles` lists the
programs: which request and which of its query offsets each starts at.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from servekit_kernels._kv_tile import load_kv_tile, online_softmax_step
from servekit_kernels._tiles import MIN_DOT, check_paged_attention, dot_precision, padded

TILE = 32
# Query rows (tokens x heads of a group) per program.
ROWS = 64


def paged_prefill_attention_reference(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """One request at a time, its context gathered block by block, an explicit mask, float32."""
    num_heads, num_kv_heads = query.shape[1], key_cache.shape[2]
    block_size = key_cache.shape[1]
    output = torch.zeros_like(query)
    starts = query_start_loc.tolist()
    for row, seq_len in enumerate(seq_lens.tolist()):
        start, end = starts[row], starts[row + 1]
        if start == end:
            continue
        blocks = block_tables[row, : -(-seq_len // block_size)].long()
        keys = key_cache[blocks].flatten(0, 1)[:seq_len].float().repeat_interleave(num_heads // num_kv_heads, dim=1)
        values = value_cache[blocks].flatten(0, 1)[:seq_len].float()
        values = values.repeat_interleave(num_heads // num_kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", query[start:end].float(), keys) * scale
        query_positions = torch.arange(seq_len - (end - start), seq_len, device=query.device)[:, None]
        key_positions = torch.arange(seq_len, device=query.device)[None, :]
        visible = key_positions <= query_positions
        if sliding_window is not None:
            visible &= key_positions > query_positions - sliding_window
        probabilities = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        output[start:end] = torch.einsum("hqk,khd->qhd", probabilities, values).to(query.dtype)
    return output


def block_q(group: int) -> int:
    """Query tokens per program for `group` query heads per KV head."""
    return max(1, ROWS // padded(group))


def prefill_tiles(query_lens: Sequence[int] | np.ndarray, tokens_per_tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(request index, first query offset) of each program, as int32 arrays: requests in order,
    each cut into tiles of `tokens_per_tile` queries."""
    lengths = np.asarray(query_lens, dtype=np.int64)
    counts = -(-lengths // tokens_per_tile)
    requests = np.repeat(np.arange(len(lengths)), counts)
    tile_starts = np.concatenate(([0], np.cumsum(counts)))[:-1]
    offsets = (np.arange(int(counts.sum())) - np.repeat(tile_starts, counts)) * tokens_per_tile
    return requests.astype(np.int32), offsets.astype(np.int32)


@triton.jit
def _prefill_kernel(
    query_ptr,
    key_cache_ptr,
    value_cache_ptr,
    block_tables_ptr,
    query_start_loc_ptr,
    seq_lens_ptr,
    tile_requests_ptr,
    tile_offsets_ptr,
    output_ptr,
    scale_log2,
    sliding_window,
    stride_query_token,
    stride_query_head,
    stride_output_token,
    stride_output_head,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    stride_table_row,
    block_size,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    DIM_PAD: tl.constexpr,
    TILE_SIZE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    tile = tl.program_id(0)
    kv_head = tl.program_id(1)
    request = tl.load(tile_requests_ptr + tile)
    query_offset = tl.load(tile_offsets_ptr + tile)
    query_start = tl.load(query_start_loc_ptr + request)
    query_len = tl.load(query_start_loc_ptr + request + 1) - query_start
    seq_len = tl.load(seq_lens_ptr + request)
    context_len = seq_len - query_len

    # Row r of the tile: query token offset + r // GROUP_PAD, head r % GROUP_PAD of the group.
    rows = tl.arange(0, BLOCK_Q * GROUP_PAD)
    tokens = query_offset + rows // GROUP_PAD
    heads = kv_head * GROUP + rows % GROUP_PAD
    dims = tl.arange(0, DIM_PAD)
    row_mask = (tokens < query_len) & (rows % GROUP_PAD < GROUP)
    dim_mask = dims < HEAD_DIM
    query = tl.load(
        query_ptr + (query_start + tokens)[:, None] * stride_query_token + heads[:, None] * stride_query_head + dims,
        mask=row_mask[:, None] & dim_mask[None, :],
        other=0.0,
    )
    query_positions = context_len + tokens

    # Keys past the tile's last query are masked for all of it; with a window, so are those
    # before the first query's window.
    last = tl.minimum(seq_len, context_len + query_offset + BLOCK_Q)
    first = 0
    if sliding_window > 0:
        first = tl.maximum(context_len + query_offset - sliding_window + 1, 0) // TILE_SIZE * TILE_SIZE
    running_max = tl.full([BLOCK_Q * GROUP_PAD], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_Q * GROUP_PAD], tl.float32)
    accumulated = tl.zeros([BLOCK_Q * GROUP_PAD, DIM_PAD], tl.float32)
    key_base = key_cache_ptr + kv_head * stride_cache_head + dims[None, :]
    value_base = value_cache_ptr + kv_head * stride_cache_head + dims[None, :]
    table = block_tables_ptr + request * stride_table_row
    for tile_start in range(first, last, TILE_SIZE):
        positions = tile_start + tl.arange(0, TILE_SIZE)
        valid = positions < last
        keys, values = load_kv_tile(
            key_base, value_base, table, positions, valid, dim_mask, block_size, stride_cache_block, stride_cache_slot
        )
        scores = tl.dot(query, tl.trans(keys), input_precision=PRECISION) * scale_log2
        visible = valid[None, :] & (positions[None, :] <= query_positions[:, None])
        if sliding_window > 0:
            visible &= positions[None, :] > query_positions[:, None] - sliding_window
        scores = tl.where(visible, scores, float("-inf"))
        running_max, running_sum, accumulated = online_softmax_step(
            scores, values, running_max, running_sum, accumulated, PRECISION
        )

    normalized = accumulated / tl.where(running_sum > 0, running_sum, 1.0)[:, None]
    tl.store(
        output_ptr + (query_start + tokens)[:, None] * stride_output_token + heads[:, None] * stride_output_head + dims,
        normalized.to(output_ptr.dtype.element_ty),
        mask=row_mask[:, None] & dim_mask[None, :],
    )


def paged_prefill_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    tiles: tuple[torch.Tensor, torch.Tensor] | None = None,
    output: torch.Tensor | None = None,
) -> torch.Tensor:
    """Returns (or fills the rows of `output` the requests own) the attention of every query row;
    see the module docstring. `tiles`: `prefill_tiles(query_lens, block_q(group))` on the device
    (built here from `query_start_loc` when not given, which reads it back to the host)."""
    check_paged_attention(query, key_cache, value_cache)
    num_heads, head_dim = query.shape[1:]
    num_seqs = seq_lens.shape[0]
    num_kv_heads = key_cache.shape[2]
    if block_tables.dim() != 2 or block_tables.shape[0] != num_seqs or query_start_loc.shape != (num_seqs + 1,):
        raise ValueError(
            f"block_tables {tuple(block_tables.shape)} and query_start_loc {tuple(query_start_loc.shape)} must "
            f"have one row (one more start) per request of seq_lens {tuple(seq_lens.shape)}"
        )
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be at least 1 or None, got {sliding_window}")
    group = num_heads // num_kv_heads
    tokens_per_tile = block_q(group)
    if tiles is None:
        requests, offsets = prefill_tiles(query_start_loc.diff().tolist(), tokens_per_tile)
        tiles = (torch.from_numpy(requests).to(query.device), torch.from_numpy(offsets).to(query.device))
    if output is None:
        output = torch.empty_like(query)
    num_tiles = tiles[0].shape[0]
    if num_tiles == 0:
        return output
    _prefill_kernel[(num_tiles, num_kv_heads)](
        query,
        key_cache,
        value_cache,
        block_tables,
        query_start_loc,
        seq_lens,
        tiles[0],
        tiles[1],
        output,
        scale * math.log2(math.e),
        sliding_window or 0,
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
        GROUP_PAD=padded(group),
        BLOCK_Q=tokens_per_tile,
        HEAD_DIM=head_dim,
        DIM_PAD=padded(head_dim, MIN_DOT),
        TILE_SIZE=TILE,
        PRECISION=dot_precision(query.dtype),
    )
    return output
