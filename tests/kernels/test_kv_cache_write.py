"""The KV-cache write kernel against its reference and against slots computed by hand."""

import pytest
import torch

from paged_cases import DEVICE
from servekit_kernels import write_kv_cache, write_kv_cache_reference


@pytest.mark.parametrize(("num_kv_heads", "head_dim"), [(1, 64), (2, 128), (8, 64)])
@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_write_matches_reference(num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype) -> None:
    """Keys and values as slices of one fused QKV output (strided rows), 19 tokens (more than one
    program's), slots at block boundaries, a padded row (-1) that writes nothing."""
    num_blocks, num_tokens = 6, 19
    generator = torch.Generator().manual_seed(block_size + num_kv_heads)
    fused = torch.randn(num_tokens, 3 * num_kv_heads * head_dim, generator=generator).to(DEVICE, dtype)
    key, value = (part.view(num_tokens, num_kv_heads, head_dim) for part in fused.split(num_kv_heads * head_dim, 1)[1:])
    boundaries = [0, block_size - 1, block_size, num_blocks * block_size - 1]
    others = [slot for slot in torch.randperm(num_blocks * block_size, generator=generator).tolist() if slot not in boundaries]
    slots = torch.tensor(boundaries + others[: num_tokens - len(boundaries)], device=DEVICE)
    slots[7] = -1
    caches = [torch.zeros(num_blocks, block_size, num_kv_heads, head_dim, dtype=dtype, device=DEVICE) for _ in range(4)]
    write_kv_cache(key, value, caches[0], caches[1], slots)
    write_kv_cache_reference(key, value, caches[2], caches[3], slots)
    assert torch.equal(caches[0], caches[2]) and torch.equal(caches[1], caches[3])
    assert torch.equal(caches[0][0, block_size - 1], key[1]) and torch.equal(caches[1][1, 0], value[2])
    assert int((caches[0].flatten(0, 1).abs().sum((1, 2)) != 0).sum()) == num_tokens - 1  # the padded row wrote nothing


def test_mismatched_shapes_are_named() -> None:
    cache = torch.zeros(2, 16, 2, 64)
    key = torch.zeros(3, 2, 64)
    with pytest.raises(ValueError, match=r"slot_mapping must hold one slot per token \(3\), got \(2,\)"):
        write_kv_cache(key, key, cache, cache, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"key \(3, 2, 32\) and value \(3, 2, 32\) do not fit caches"):
        write_kv_cache(key[..., :32], key[..., :32], cache, cache, torch.zeros(3, dtype=torch.int64))
