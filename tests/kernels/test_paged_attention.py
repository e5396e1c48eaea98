"""Paged decode and prefill attention kernels against their PyTorch references, and the
references against dense attention (PyTorch's SDPA) over each request's contiguous context."""

import pytest
import torch
import torch.nn.functional as F

from paged_cases import DEVICE, PagedCase, assert_close, paged_case
from servekit_kernels import (
    paged_decode_attention,
    paged_decode_attention_reference,
    paged_prefill_attention,
    paged_prefill_attention_reference,
)

GRID = [
    pytest.param(head_dim, group, block_size, dtype, id=f"d{head_dim}-g{group}-b{block_size}-{str(dtype)[6:]}")
    for head_dim in (64, 128)
    for group in (1, 4, 8)
    for block_size in (16, 32)
    for dtype in (torch.float32, torch.float16)
]


def dense_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, sliding_window: int | None
) -> torch.Tensor:
    """`query` [query_len, heads, dim], the last tokens of a context of `keys`/`values`."""
    query_len, seq_len = query.shape[0], keys.shape[0]
    query_positions = torch.arange(seq_len - query_len, seq_len, device=query.device)[:, None]
    key_positions = torch.arange(seq_len, device=query.device)[None, :]
    visible = key_positions <= query_positions
    if sliding_window is not None:
        visible &= key_positions > query_positions - sliding_window
    attended = F.scaled_dot_product_attention(
        query.transpose(0, 1).float(),
        keys.transpose(0, 1).float(),
        values.transpose(0, 1).float(),
        attn_mask=visible,
        scale=scale,
        enable_gqa=True,
    )
    return attended.transpose(0, 1)


def decode_inputs(case: PagedCase, num_heads: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    head_dim = case.key_cache.shape[3]
    return torch.randn(len(case.contexts), num_heads, head_dim, generator=generator).to(DEVICE, case.key_cache.dtype)


@pytest.mark.parametrize(("head_dim", "group", "block_size", "dtype"), GRID)
def test_decode_matches_reference(head_dim: int, group: int, block_size: int, dtype: torch.dtype) -> None:
    """Ragged contexts: one token, exactly one block, one past a block, several blocks (several
    tiles: the split test)."""
    seq_lens = [1, block_size, block_size + 1, 60]
    case = paged_case(0, seq_lens, num_kv_heads=1, head_dim=head_dim, block_size=block_size, dtype=dtype, device=DEVICE)
    query = decode_inputs(case, group, 1)
    args = (query, case.key_cache, case.value_cache, case.block_tables, case.seq_lens, head_dim**-0.5)
    assert_close(paged_decode_attention(*args), paged_decode_attention_reference(*args), dtype)


@pytest.mark.parametrize(("num_splits", "sliding_window"), [(3, None), (2, 40)])
def test_decode_split_over_the_context_matches_reference(num_splits: int, sliding_window: int | None) -> None:
    """Several programs per sequence, merged; the short contexts' last ranges stay empty, and a
    context of length 0 (a padded row) gives zeros."""
    seq_lens = [150, 0, 1, 16]
    case = paged_case(2, seq_lens, num_kv_heads=1, head_dim=64, block_size=16, dtype=torch.float32, device=DEVICE)
    query = decode_inputs(case, 4, 3)
    args = (query, case.key_cache, case.value_cache, case.block_tables, case.seq_lens, 0.125, sliding_window)
    output = paged_decode_attention(*args, num_splits=num_splits)
    assert_close(output, paged_decode_attention_reference(*args), torch.float32)
    assert torch.equal(output[1], torch.zeros_like(output[1]))


def prefill_inputs(
    seed: int, query_lens: list[int], seq_lens: list[int], num_heads: int, **shape: object
) -> tuple[PagedCase, torch.Tensor, torch.Tensor]:
    case = paged_case(seed, seq_lens, device=DEVICE, **shape)  # type: ignore[arg-type]
    head_dim = case.key_cache.shape[3]
    generator = torch.Generator().manual_seed(seed + 1)
    query = torch.randn(sum(query_lens), num_heads, head_dim, generator=generator).to(DEVICE, case.key_cache.dtype)
    starts = torch.tensor([0, *query_lens], dtype=torch.int32).cumsum(0).to(DEVICE, torch.int32)
    return case, query, starts


@pytest.mark.parametrize(("head_dim", "group", "block_size", "dtype"), GRID)
def test_prefill_matches_reference(head_dim: int, group: int, block_size: int, dtype: torch.dtype) -> None:
    """In one launch: a one-token prompt, a whole prompt of one block, and a chunk after a cached
    prefix that crosses a block boundary."""
    query_lens, seq_lens = [1, block_size, 9], [1, block_size, block_size + 4]
    shape = dict(num_kv_heads=1, head_dim=head_dim, block_size=block_size, dtype=dtype)
    case, query, starts = prefill_inputs(4, query_lens, seq_lens, group, **shape)
    args = (query, case.key_cache, case.value_cache, case.block_tables, starts, case.seq_lens, head_dim**-0.5)
    assert_close(paged_prefill_attention(*args), paged_prefill_attention_reference(*args), dtype)


def test_prefill_with_a_sliding_window_and_many_query_tiles() -> None:
    """Chunks longer than one program's queries (16 with a group of 4), contexts of several key
    tiles, a window shorter than the chunk."""
    query_lens, seq_lens = [40, 3], [40, 70]
    shape = dict(num_kv_heads=2, head_dim=64, block_size=16, dtype=torch.float32)
    case, query, starts = prefill_inputs(6, query_lens, seq_lens, 8, **shape)
    args = (query, case.key_cache, case.value_cache, case.block_tables, starts, case.seq_lens, 0.125, 24)
    assert_close(paged_prefill_attention(*args), paged_prefill_attention_reference(*args), torch.float32)


@pytest.mark.parametrize("sliding_window", [None, 7])
def test_references_are_dense_attention_over_each_context(sliding_window: int | None) -> None:
    query_lens, seq_lens = [1, 16, 5, 12], [1, 16, 37, 12]
    shape = dict(num_kv_heads=2, head_dim=32, block_size=16, dtype=torch.float32)
    case, query, starts = prefill_inputs(8, query_lens, seq_lens, 8, **shape)
    prefill = paged_prefill_attention_reference(
        query, case.key_cache, case.value_cache, case.block_tables, starts, case.seq_lens, 0.2, sliding_window
    )
    last_queries = query[starts[1:].long() - 1]
    decode = paged_decode_attention_reference(
        last_queries, case.key_cache, case.value_cache, case.block_tables, case.seq_lens, 0.2, sliding_window
    )
    for row, (keys, values) in enumerate(case.contexts):
        rows = slice(int(starts[row]), int(starts[row + 1]))
        expected = dense_attention(query[rows], keys, values, 0.2, sliding_window)
        torch.testing.assert_close(prefill[rows], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(decode[row], expected[-1], rtol=1e-5, atol=1e-5)


def test_bad_shapes_are_named() -> None:
    case = paged_case(0, [5], num_kv_heads=2, head_dim=64, block_size=16, dtype=torch.float32, device=DEVICE)
    query = decode_inputs(case, 3, 0)
    args = (case.key_cache, case.value_cache, case.block_tables, case.seq_lens, 0.1)
    with pytest.raises(ValueError, match=r"query \(1, 3, 64\) does not fit caches"):
        paged_decode_attention(query, *args)
    with pytest.raises(ValueError, match="the caches must have the query's dtype torch.float16"):
        paged_decode_attention(decode_inputs(case, 4, 0).half(), *args)
    with pytest.raises(ValueError, match="num_splits must be at least 1, got 0"):
        paged_decode_attention(decode_inputs(case, 4, 0), *args, num_splits=0)
    with pytest.raises(ValueError, match="query must be float32, float16 or bfloat16, not torch.int64"):
        paged_decode_attention(query.long(), *args)
