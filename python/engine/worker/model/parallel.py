"""Which tensor-parallel rank this process is, and the collectives its layers use.

Passed explicitly to every parallel layer (no module-global state). With `size == 1` every
collective is the identity, so a single-rank model never touches torch.distributed.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class TensorParallel:
    rank: int = 0
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"tensor parallel size must be at least 1, got {self.size}")
        if not 0 <= self.rank < self.size:
            raise ValueError(f"tensor parallel rank must be in [0, {self.size}), got {self.rank}")

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums `tensor` over the ranks, in place."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenates every rank's `tensor` (equal shapes) along `dim`, in rank order."""
        if self.size == 1:
            return tensor
        tensor = tensor.contiguous()
        gathered = torch.empty(
            (self.size * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device
        )
        dist.all_gather_into_tensor(gathered, tensor)
        return torch.cat(gathered.chunk(self.size, dim=0), dim=dim)

    def broadcast_from_first(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank ends with rank 0's `tensor` (same shape and dtype on every rank), in place."""
        if self.size > 1:
            dist.broadcast(tensor, src=0)
        return tensor

    def min_over_ranks(self, value: int, device: torch.device) -> int:
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())
