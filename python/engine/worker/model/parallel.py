"""Where this process sits in the model: its tensor-parallel rank within its stage, and its
pipeline stage (which layers it holds). Passed explicitly to every parallel layer (no
module-global state). With one rank and one stage every collective is the identity, so a
single-process model never touches torch.distributed.

Ranks are laid out stage after stage: the global rank of tensor-parallel rank `t` of stage `s`
is `s * tp_size + t`. Each stage's tensor-parallel ranks form their own process group; stage
`s` hands its activations to stage `s + 1`, rank `t` to rank `t`.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class TensorParallel:
    rank: int = 0
    size: int = 1
    """The stage's process group (None: the default group, which is the stage with one stage)."""
    group: Any = None

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
            dist.all_reduce(tensor, group=self.group)
        return tensor

    def all_gather(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenates every rank's `tensor` (equal shapes) along `dim`, in rank order."""
        if self.size == 1:
            return tensor
        tensor = tensor.contiguous()
        gathered = torch.empty(
            (self.size * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device
        )
        dist.all_gather_into_tensor(gathered, tensor, group=self.group)
        return torch.cat(gathered.chunk(self.size, dim=0), dim=dim)

    def broadcast_from_first(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank ends with rank 0's `tensor` (same shape and dtype on every rank), in place."""
        if self.size > 1:
            dist.broadcast(tensor, src=dist.get_global_rank(self.group, 0) if self.group else 0, group=self.group)
        return tensor


@dataclass(frozen=True, slots=True)
class PipelineStage:
    """Stage `index` of `size` holds layers `first_layer` to `end_layer` (exclusive); the first
    stage also the embedding, the last the final norm and the LM head."""

    index: int = 0
    size: int = 1
    first_layer: int = 0
    end_layer: int = 0
    tp_size: int = 1
    tp_rank: int = 0

    @staticmethod
    def of(index: int, size: int, num_layers: int, tp_size: int = 1, tp_rank: int = 0) -> "PipelineStage":
        """Layers split as evenly as possible, the earlier stages taking one more when they do not divide."""
        if not 1 <= size <= num_layers:
            raise ValueError(f"pipeline_parallel_size must be in [1, {num_layers}] (the model's layers), got {size}")
        base, extra = divmod(num_layers, size)
        first = index * base + min(index, extra)
        return PipelineStage(index, size, first, first + base + (index < extra), tp_size, tp_rank)

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.size - 1

    @property
    def num_layers(self) -> int:
        return self.end_layer - self.first_layer

    def holds_layer(self, layer: int) -> bool:
        return self.first_layer <= layer < self.end_layer

    def send_to_next(self, hidden: torch.Tensor) -> None:
        dist.send(hidden.contiguous(), dst=(self.index + 1) * self.tp_size + self.tp_rank)

    def receive_from_previous(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        hidden = torch.empty(shape, dtype=dtype, device=device)
        dist.recv(hidden, src=(self.index - 1) * self.tp_size + self.tp_rank)
        return hidden


def min_over_all_ranks(value: int, device: torch.device) -> int:
    """The smallest `value` of every process of the model (all stages, all ranks)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())
