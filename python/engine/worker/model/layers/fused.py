"""The layers whose work Triton kernels fuse (`servekit_kernels`), for models that run the
`triton` attention backend: residual add + RMSNorm in one kernel, SiLU-and-multiply in one, and
rotary embedding applied in place from each token's position (its angles computed in float32 in
the kernel, so no cosine/sine table). Same parameters, checkpoint names and semantics as the
plain PyTorch layers they replace; importing this module imports the kernels.
"""

from dataclasses import dataclass

import torch
from servekit_kernels import rms_norm, rotary_embedding, silu_and_mul
from torch import nn

from engine.model_config import RopeConfig
from engine.worker.model.layers.mlp import GatedMLP
from engine.worker.model.layers.norm import RMSNorm
from engine.worker.model.layers.rotary import inverse_frequencies


class FusedRMSNorm(RMSNorm):
    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return rms_norm(hidden, self.weight, self.eps, residual)


class FusedGatedMLP(GatedMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu_and_mul(self.gate_up_proj(x)))


@dataclass(frozen=True, slots=True)
class KernelRotation:
    """Rotates queries and keys in place (they are views of the fused QKV projection's output)."""

    positions: torch.Tensor
    """[head_dim // 2] float32."""
    inv_freq: torch.Tensor

    def apply(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rotary_embedding(query, key, self.positions, self.inv_freq)


class FusedRotaryEmbedding(nn.Module):
    """`max_positions` is the plain layer's table length; the kernel needs no table."""

    def __init__(self, head_dim: int, max_positions: int, rope: RopeConfig) -> None:
        super().__init__()
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, rope), persistent=False)

    def rotation(self, positions: torch.Tensor, dtype: torch.dtype) -> KernelRotation:
        return KernelRotation(positions, self.inv_freq)
