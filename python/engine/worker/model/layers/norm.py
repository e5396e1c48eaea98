"""Root-mean-square layer norm, computed in float32 like the Hugging Face reference."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds `residual` (when given) first; returns the normalized sum and the sum, the next residual."""
        if residual is not None:
            hidden = hidden + residual
        normalized = hidden.float()
        normalized = normalized * torch.rsqrt(normalized.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normalized.to(hidden.dtype), hidden
