"""What the kernels share: tile sizes (Triton tiles are powers of two, and `tl.dot` needs at least
16 rows, columns and inner elements, so smaller dimensions are padded and masked) and the checks
of their inputs."""

import torch
import triton

MIN_DOT = 16


def padded(size: int, minimum: int = 1) -> int:
    """The power of two a tile of `size` elements spans."""
    return max(minimum, triton.next_power_of_2(size))


def dot_precision(dtype: torch.dtype) -> str:
    """float32 operands multiply in full precision (Triton's default for them is TF32)."""
    return "ieee" if dtype == torch.float32 else "tf32"


def check_dtype(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"{name} must be float32, float16 or bfloat16, not {tensor.dtype}")


def check_paged_attention(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor) -> None:
    """`query` [tokens, num_heads, head_dim] against caches [blocks, block_size, num_kv_heads, head_dim]."""
    check_dtype("query", query)
    if key_cache.dtype != query.dtype or value_cache.dtype != query.dtype:
        raise ValueError(f"the caches must have the query's dtype {query.dtype}, not {key_cache.dtype}")
    if (
        query.dim() != 3
        or key_cache.dim() != 4
        or key_cache.shape[3] != query.shape[2]
        or value_cache.shape != key_cache.shape
        or query.shape[1] % key_cache.shape[2]
    ):
        raise ValueError(
            f"query {tuple(query.shape)} does not fit caches {tuple(key_cache.shape)} / {tuple(value_cache.shape)}"
        )
    if key_cache.stride() != value_cache.stride() or key_cache.stride(3) != 1 or query.stride(2) != 1:
        raise ValueError("query and the caches must be contiguous in head_dim, the caches laid out alike")
