"""SwiGLU's activation: `silu(gate) * up` for rows that hold `[gate | up]` (a fused gate/up
projection's output), computed in float32 and cast back."""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from servekit_kernels._tiles import check_dtype

BLOCK = 1024


def silu_and_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def _silu_and_mul_kernel(gate_up_ptr, output_ptr, stride_row, width, BLOCK_SIZE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    columns = tl.program_id(1) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = columns < width
    gate = tl.load(gate_up_ptr + row * stride_row + columns, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(gate_up_ptr + row * stride_row + width + columns, mask=mask, other=0.0).to(tl.float32)
    activated = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(output_ptr + row * width + columns, activated.to(output_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """`gate_up` `[num_tokens, 2 * width]` (rows contiguous) -> `[num_tokens, width]`."""
    check_dtype("gate_up", gate_up)
    if gate_up.dim() != 2 or gate_up.shape[1] % 2 or gate_up.stride(1) != 1:
        raise ValueError(f"gate_up must be [num_tokens, 2 * width] with contiguous rows, got {tuple(gate_up.shape)}")
    num_tokens, width = gate_up.shape[0], gate_up.shape[1] // 2
    output = torch.empty((num_tokens, width), dtype=gate_up.dtype, device=gate_up.device)
    if num_tokens and width:
        _silu_and_mul_kernel[(num_tokens, triton.cdiv(width, BLOCK))](
            gate_up, output, gate_up.stride(0), width, BLOCK_SIZE=BLOCK
        )
    return output
