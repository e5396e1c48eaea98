"""Shape rules shared by the kernels: Triton tiles are powers of two, and `tl.dot` needs at least 16
rows, columns and inner elements, so smaller dimensions are padded (and masked)."""

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
