"""Linear layers split across tensor-parallel ranks (Megatron style).

Column-parallel: the output features are split; each rank computes its slice and no
communication is needed. Row-parallel: the input features are split; each rank computes a
partial sum and an all-reduce adds them. A column-parallel layer feeding a row-parallel one (q/k/v
then o, gate/up then down) costs one all-reduce per pair.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.worker.model.layers.weights import CheckpointTensor, copy_exact, copy_into, expect_shape
from engine.worker.model.parallel import TensorParallel


@dataclass(frozen=True, slots=True)
class OutputPart:
    """One checkpoint tensor fused into a column-parallel layer: its full number of output
    features, how many of them this rank holds, where they start in the checkpoint tensor and
    where they go in the fused parameter."""

    full_size: int
    local_size: int
    source_start: int
    local_offset: int


class ColumnParallelLinear(nn.Module):
    """`output_sizes` lists the fused checkpoint tensors (e.g. gate and up); each is split evenly."""

    def __init__(self, input_size: int, output_sizes: Sequence[int], *, bias: bool, tp: TensorParallel) -> None:
        super().__init__()
        parts = []
        offset = 0
        for full_size in output_sizes:
            if full_size % tp.size:
                raise ValueError(f"output size {full_size} is not divisible by tensor parallel size {tp.size}")
            local_size = full_size // tp.size
            parts.append(OutputPart(full_size, local_size, tp.rank * local_size, offset))
            offset += local_size
        self._init(input_size, parts, bias)

    def _init(self, input_size: int, parts: Sequence[OutputPart], bias: bool) -> None:
        self.input_size = input_size
        self.parts = tuple(parts)
        local_output = sum(part.local_size for part in parts)
        self.weight = nn.Parameter(torch.empty(local_output, input_size), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(local_output), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def load_weight(self, param_name: str, source: CheckpointTensor, shard_id: int | None) -> None:
        part = self.parts[shard_id or 0]
        param = {"weight": self.weight, "bias": self.bias}.get(param_name)
        if param is None:
            raise ValueError(f"checkpoint tensor {source.name} has no place in this model (no such parameter)")
        full_shape = (part.full_size, self.input_size) if param_name == "weight" else (part.full_size,)
        expect_shape(source, full_shape)
        copy_into(param, source, dim=0, start=part.source_start, size=part.local_size, offset=part.local_offset)


class QKVParallelLinear(ColumnParallelLinear):
    """Query, key and value projections fused; shard ids 0, 1, 2. Heads are split across ranks;
    when there are fewer KV heads than ranks, each KV head is replicated on `size / num_kv_heads` ranks."""

    def __init__(
        self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, *, bias: bool, tp: TensorParallel
    ) -> None:
        nn.Module.__init__(self)
        if num_heads % tp.size:
            raise ValueError(f"num_attention_heads ({num_heads}) is not divisible by tensor parallel size {tp.size}")
        if num_kv_heads % tp.size and tp.size % num_kv_heads:
            raise ValueError(
                f"num_key_value_heads ({num_kv_heads}) and tensor parallel size ({tp.size}) must divide one another"
            )
        self.num_local_heads = num_heads // tp.size
        self.num_local_kv_heads = max(1, num_kv_heads // tp.size)
        first_kv_head = (
            tp.rank * self.num_local_kv_heads if num_kv_heads >= tp.size else tp.rank // (tp.size // num_kv_heads)
        )
        q_size = self.num_local_heads * head_dim
        kv_size = self.num_local_kv_heads * head_dim
        parts = [
            OutputPart(num_heads * head_dim, q_size, tp.rank * q_size, 0),
            OutputPart(num_kv_heads * head_dim, kv_size, first_kv_head * head_dim, q_size),
            OutputPart(num_kv_heads * head_dim, kv_size, first_kv_head * head_dim, q_size + kv_size),
        ]
        self._init(hidden_size, parts, bias)


class RowParallelLinear(nn.Module):
    """The input features are split; the partial products are summed across ranks."""

    def __init__(self, input_size: int, output_size: int, *, bias: bool, tp: TensorParallel) -> None:
        super().__init__()
        if input_size % tp.size:
            raise ValueError(f"input size {input_size} is not divisible by tensor parallel size {tp.size}")
        self.tp = tp
        self.input_size = input_size
        self.local_input_size = input_size // tp.size
        self.weight = nn.Parameter(torch.empty(output_size, self.local_input_size), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(output_size), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.tp.all_reduce(F.linear(x, self.weight))
        return output if self.bias is None else output + self.bias

    def load_weight(self, param_name: str, source: CheckpointTensor, shard_id: int | None) -> None:
        if param_name == "weight":
            expect_shape(source, (self.weight.shape[0], self.input_size))
            start = self.tp.rank * self.local_input_size
            copy_into(self.weight, source, dim=1, start=start, size=self.local_input_size)
        elif param_name == "bias" and self.bias is not None:
            copy_exact(self.bias, source)
        else:
            raise ValueError(f"checkpoint tensor {source.name} has no place in this model (no such parameter)")
