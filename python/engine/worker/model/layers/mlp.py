"""The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)), gate and up fused in one matmul."""

import torch
import torch.nn.functional as F
from torch import nn

from engine.worker.model.layers.linear import ColumnParallelLinear, RowParallelLinear
from engine.worker.model.parallel import TensorParallel


class GatedMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, *, bias: bool, tp: TensorParallel) -> None:
        super().__init__()
        self.gate_up_proj = ColumnParallelLinear(hidden_size, [intermediate_size] * 2, bias=bias, tp=tp)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias=bias, tp=tp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)
