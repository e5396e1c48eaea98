"""How a layer copies its part of a checkpoint tensor into its parameter.

A checkpoint tensor is read lazily (`CheckpointTensor`), so a rank reads only its own rows or
columns from a safetensors file, never the whole tensor.
"""

from typing import Protocol

import torch


class CheckpointTensor(Protocol):
    """A tensor in a checkpoint: its full shape, and a reader of a slice along one dimension."""

    name: str

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read(self, dim: int = 0, start: int = 0, stop: int | None = None) -> torch.Tensor: ...


def copy_into(
    param: torch.Tensor, source: CheckpointTensor, *, dim: int, start: int, size: int, offset: int = 0
) -> None:
    """Copies `size` rows (columns with `dim=1`) of `source` from `start` into `param` from `offset`.

    Rows past the source's end (vocabulary padding on the last rank) are zeroed.
    """
    other_dims = [length for axis, length in enumerate(param.shape) if axis != dim]
    source_other = [length for axis, length in enumerate(source.shape) if axis != dim]
    if len(source.shape) != param.dim() or other_dims != source_other:
        raise ValueError(
            f"checkpoint tensor {source.name} has shape {list(source.shape)}, "
            f"which does not fit parameter shape {list(param.shape)}"
        )
    target = param.data.narrow(dim, offset, size)
    length = max(0, min(size, source.shape[dim] - start))
    if length:
        target.narrow(dim, 0, length).copy_(source.read(dim, start, start + length))
    if length < size:
        target.narrow(dim, length, size - length).zero_()


def copy_exact(param: torch.Tensor, source: CheckpointTensor) -> None:
    """A replicated parameter: the checkpoint tensor must have exactly its shape."""
    expect_shape(source, tuple(param.shape))
    param.data.copy_(source.read())


def expect_shape(source: CheckpointTensor, shape: tuple[int, ...]) -> None:
    if tuple(source.shape) != tuple(shape):
        raise ValueError(f"checkpoint tensor {source.name} has shape {list(source.shape)}, expected {list(shape)}")
