"""Random paged KV caches: each request's context scattered over shuffled blocks, as the
scheduler hands them out, with the contiguous keys and values kept to check against."""

import random
from dataclasses import dataclass

import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class PagedCase:
    key_cache: torch.Tensor
    value_cache: torch.Tensor
    """[num_requests, max blocks] int32, padded with block 0."""
    block_tables: torch.Tensor
    seq_lens: torch.Tensor
    """Per request: its context's keys and values, [seq_len, num_kv_heads, head_dim] each."""
    contexts: list[tuple[torch.Tensor, torch.Tensor]]


def paged_case(
    seed: int,
    seq_lens: list[int],
    *,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    spare_blocks: int = 3,
) -> PagedCase:
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    blocks_needed = [-(-n // block_size) for n in seq_lens]
    num_blocks = sum(blocks_needed) + spare_blocks
    free = list(range(num_blocks))
    rng.shuffle(free)
    key_cache = randn(num_blocks, block_size, num_kv_heads, head_dim)  # unused slots hold noise
    value_cache = randn(num_blocks, block_size, num_kv_heads, head_dim)
    tables = torch.zeros((len(seq_lens), max(1, *blocks_needed)), dtype=torch.int32)
    contexts = []
    for row, (seq_len, count) in enumerate(zip(seq_lens, blocks_needed, strict=True)):
        table = [free.pop() for _ in range(count)]
        tables[row, :count] = torch.tensor(table, dtype=torch.int32)
        keys, values = randn(seq_len, num_kv_heads, head_dim), randn(seq_len, num_kv_heads, head_dim)
        for position in range(seq_len):
            block, offset = table[position // block_size], position % block_size
            key_cache[block, offset] = keys[position]
            value_cache[block, offset] = values[position]
        contexts.append((keys, values))
    return PagedCase(
        key_cache=key_cache,
        value_cache=value_cache,
        block_tables=tables.to(device),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
        contexts=contexts,
    )


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, half_limit: float = 4e-3) -> None:
    """Within float32 rounding, or `half_limit` (relative and absolute) for 16-bit data."""
    limit = 1e-5 if dtype == torch.float32 else half_limit
    torch.testing.assert_close(actual, expected, rtol=limit, atol=limit)
