"""Residual add fused with root-mean-square norm, over rows of `hidden_size` elements.

`residual` given: the sum `hidden + residual` (in the input dtype) is the new residual, and it
is what gets normalized; the statistics are float32, the normalized row is cast to the input
dtype before the weight multiplies it (as Hugging Face's Llama does).
"""

import torch
import triton
import triton.language as tl

from servekit_kernels._tiles import check_dtype, padded


def rms_norm_reference(
    hidden: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalized, new residual) for `hidden` `[num_tokens, hidden_size]`."""
    if residual is not None:
        hidden = hidden + residual
    normalized = hidden.float() * torch.rsqrt(hidden.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * normalized.to(hidden.dtype), hidden


@triton.jit
def _rms_norm_kernel(
    hidden_ptr,
    residual_ptr,
    weight_ptr,
    output_ptr,
    sum_ptr,
    eps,
    stride_hidden,
    stride_residual,
    HIDDEN_SIZE: tl.constexpr,
    SIZE_PAD: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    columns = tl.arange(0, SIZE_PAD)
    mask = columns < HIDDEN_SIZE
    hidden = tl.load(hidden_ptr + row * stride_hidden + columns, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        hidden += tl.load(residual_ptr + row * stride_residual + columns, mask=mask, other=0.0)
        tl.store(sum_ptr + row * HIDDEN_SIZE + columns, hidden, mask=mask)
    x = hidden.to(tl.float32)
    inverse_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / HIDDEN_SIZE + eps)
    normalized = (x * inverse_rms).to(hidden.dtype)
    weight = tl.load(weight_ptr + columns, mask=mask, other=0.0)
    tl.store(output_ptr + row * HIDDEN_SIZE + columns, (weight * normalized).to(output_ptr.dtype.element_ty), mask=mask)


def rms_norm(
    hidden: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused `rms_norm_reference`: new contiguous tensors, the second `hidden` itself when
    there is no residual."""
    check_dtype("hidden", hidden)
    if hidden.dim() != 2 or hidden.stride(1) != 1 or weight.shape != hidden.shape[1:]:
        raise ValueError(
            f"hidden must be [num_tokens, hidden_size] with contiguous rows and weight [hidden_size], "
            f"got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if residual is not None and (residual.shape != hidden.shape or residual.dtype != hidden.dtype or residual.stride(1) != 1):
        raise ValueError(f"residual must match hidden {tuple(hidden.shape)} {hidden.dtype}, got {tuple(residual.shape)}")
    num_tokens, hidden_size = hidden.shape
    output_dtype = torch.promote_types(weight.dtype, hidden.dtype)
    output = torch.empty((num_tokens, hidden_size), dtype=output_dtype, device=hidden.device)
    summed = torch.empty_like(hidden, memory_format=torch.contiguous_format) if residual is not None else hidden
    if num_tokens:
        _rms_norm_kernel[(num_tokens,)](
            hidden,
            residual if residual is not None else hidden,
            weight,
            output,
            summed,
            eps,
            hidden.stride(0),
            residual.stride(0) if residual is not None else 0,
            HIDDEN_SIZE=hidden_size,
            SIZE_PAD=padded(hidden_size),
            HAS_RESIDUAL=residual is not None,
        )
    return output, summed
