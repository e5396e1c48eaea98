"""Decode-only steps run at a padded shape (`engine.worker.decode_buckets`) from static input
buffers: the path a captured CUDA graph replays (`engine.worker.cuda_graphs`), and on a device
without graphs the same code run eagerly.

A step of `n` decodes fills the first `n` rows of each buffer; the padding rows up to the
bucket's batch size read token 0 at position 0, attend to one token, and write their key and
value into the padding block, a KV block past the scheduler's (it never hands it out), so they
touch no request's cache. Only the first `n` rows of the hidden states come back: padding rows
are never sampled.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.worker.attention import AttentionBackend, DecodeInputs
from engine.worker.decode_buckets import DecodeBucket, DecodeBuckets
from engine.worker.request_table import StepWork


class PaddedDecode:
    """`kv_caches` hold `padding_block` (one block past the scheduler's) on every layer."""

    def __init__(
        self,
        model: nn.Module,
        backend: AttentionBackend[Any],
        kv_caches: Sequence[torch.Tensor],
        buckets: DecodeBuckets,
        *,
        padding_block: int,
        block_size: int,
        hidden_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        if not backend.captures_decode:
            raise ValueError(f"attention backend {backend.name!r} has no fixed-shape decode to pad")
        self.model = model
        self.backend = backend
        self.kv_caches = list(kv_caches)
        self.buckets = buckets
        self.padding_block = padding_block
        self.block_size = block_size
        rows, width = buckets.max_batch_size, buckets.max_width
        padding_slot = padding_block * block_size
        self.input_ids = torch.zeros(rows, dtype=torch.int64, device=device)
        self.positions = torch.zeros(rows, dtype=torch.int64, device=device)
        self.slot_mapping = torch.full((rows,), padding_slot, dtype=torch.int64, device=device)
        self.seq_lens = torch.ones(rows, dtype=torch.int32, device=device)
        self.block_tables = torch.full((rows, width), padding_block, dtype=torch.int32, device=device)
        self.hidden = torch.zeros(rows, hidden_size, dtype=dtype, device=device)
        """Set by `engine.worker.cuda_graphs.capture_decode_graphs`: what replays each bucket."""
        self.graphs: dict[DecodeBucket, Any] = {}

    def static_buffers(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.positions, self.slot_mapping, self.seq_lens, self.block_tables, self.hidden)

    def bucket_for(self, work: StepWork) -> DecodeBucket | None:
        """The padded shape of `work` when it is decode-only (one token per entry) and fits one."""
        if not len(work) or len(work.input_ids) != len(work):
            return None
        return self.buckets.choose(len(work), work.block_tables.shape[1])

    def load(self, work: StepWork, bucket: DecodeBucket) -> None:
        """Writes `work`'s rows, then padding rows, into the first `bucket.batch_size` rows."""
        num_rows, rows, width = len(work), bucket.batch_size, bucket.width
        positions = work.seq_lens - 1
        tables = np.full((rows, width), self.padding_block, dtype=np.int64)
        tables[:num_rows, : work.block_tables.shape[1]] = work.block_tables
        slots = np.full(rows, self.padding_block * self.block_size, dtype=np.int64)
        slots[:num_rows] = (
            tables[np.arange(num_rows), positions // self.block_size] * self.block_size + positions % self.block_size
        )
        input_ids = np.zeros(rows, dtype=np.int64)
        input_ids[:num_rows] = work.input_ids
        padded_positions = np.zeros(rows, dtype=np.int64)
        padded_positions[:num_rows] = positions
        seq_lens = np.ones(rows, dtype=np.int32)
        seq_lens[:num_rows] = work.seq_lens
        for target, source in (
            (self.input_ids, input_ids),
            (self.positions, padded_positions),
            (self.slot_mapping, slots),
            (self.seq_lens, seq_lens),
        ):
            target[:rows].copy_(torch.from_numpy(source), non_blocking=True)
        self.block_tables[:rows, :width].copy_(torch.from_numpy(tables.astype(np.int32)), non_blocking=True)

    def forward(self, bucket: DecodeBucket) -> torch.Tensor:
        """The model over the buffers' first `bucket.batch_size` rows, into `hidden` (what a graph
        captures: fixed shapes, device tensors only)."""
        rows = bucket.batch_size
        inputs = DecodeInputs(
            block_size=self.block_size,
            slot_mapping=self.slot_mapping[:rows],
            seq_lens=self.seq_lens[:rows],
            block_tables=self.block_tables[:rows, : bucket.width],
        )
        prepared = self.backend.prepare_decode(inputs)
        hidden = self.model(self.input_ids[:rows], self.positions[:rows], self.kv_caches, prepared)
        self.hidden[:rows].copy_(hidden)
        return self.hidden[:rows]

    def run(self, bucket: DecodeBucket) -> None:
        """Runs the loaded bucket: its graph's replay when captured, else `forward` eagerly."""
        graph = self.graphs.get(bucket)
        if graph is None:
            self.forward(bucket)
        else:
            graph.replay()
