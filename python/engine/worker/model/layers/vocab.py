"""The token embedding and the LM head, split across ranks by vocabulary rows.

Each rank holds `ceil(vocab_size / size)` rows (the last rank's tail is zero padding). The
embedding looks up the ids that fall in its rows and an all-reduce adds the ranks' results; the
head computes logits for its rows and an all-gather concatenates them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from engine.worker.model.layers.weights import CheckpointTensor, copy_into, expect_shape
from engine.worker.model.parallel import TensorParallel


class VocabParallelEmbedding(nn.Module):
    """`weight`, when given, is another layer's weight of this shape to share."""

    def __init__(
        self, vocab_size: int, hidden_size: int, *, tp: TensorParallel, weight: nn.Parameter | None = None
    ) -> None:
        super().__init__()
        self.tp = tp
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.rows_per_rank = -(-vocab_size // tp.size)
        self.first_row = tp.rank * self.rows_per_rank
        if weight is None:
            weight = nn.Parameter(torch.empty(self.rows_per_rank, hidden_size), requires_grad=False)
        self.weight = weight

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return F.embedding(token_ids, self.weight)
        local_ids = token_ids - self.first_row
        is_local = (local_ids >= 0) & (local_ids < self.rows_per_rank)
        embedded = F.embedding(local_ids.clamp(0, self.rows_per_rank - 1), self.weight)
        embedded = embedded * is_local[:, None].to(embedded.dtype)
        return self.tp.all_reduce(embedded)

    def load_weight(self, param_name: str, source: CheckpointTensor, shard_id: int | None) -> None:
        if param_name != "weight":
            raise ValueError(f"checkpoint tensor {source.name} has no place in this model (no such parameter)")
        expect_shape(source, (self.vocab_size, self.hidden_size))
        copy_into(self.weight, source, dim=0, start=self.first_row, size=self.rows_per_rank)


class ParallelLMHead(VocabParallelEmbedding):
    """With `tied_to`, shares the embedding's weight (tied word embeddings) and allocates none."""

    def __init__(
        self, vocab_size: int, hidden_size: int, *, tp: TensorParallel, tied_to: VocabParallelEmbedding | None
    ) -> None:
        super().__init__(vocab_size, hidden_size, tp=tp, weight=None if tied_to is None else tied_to.weight)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hidden, self.weight)
        if self.tp.size == 1:
            return logits
        return self.tp.all_gather(logits, dim=-1)[:, : self.vocab_size]
