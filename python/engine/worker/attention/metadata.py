"""Where each request's tokens sit in one step's flattened batch, and where its KV lives.

Built once per step from plain lists, shared by every layer. Request `i` runs query tokens
`query_start_loc[i] : query_start_loc[i + 1]` of the batch; they are the last `query_lens[i]`
of its `seq_lens[i]` context tokens (the cached ones first), so query `j` of it sits at position
`seq_lens[i] - query_lens[i] + j` and attends to context positions up to its own.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionMetadata:
    block_size: int
    query_lens: tuple[int, ...]
    seq_lens: tuple[int, ...]
    max_query_len: int
    max_seq_len: int
    """[num_tokens] int64: each token's position in its request."""
    positions: torch.Tensor
    """[num_tokens] int64: the cache slot (block id * block_size + offset) of each new token's K/V."""
    slot_mapping: torch.Tensor
    """[num_requests + 1] int32: cumulative query lengths (flash-attn's cu_seqlens_q)."""
    query_start_loc: torch.Tensor
    """[num_requests + 1] int32: cumulative context lengths (flash-attn's cu_seqlens_k)."""
    seq_start_loc: torch.Tensor
    """[num_requests] int32."""
    seq_lens_tensor: torch.Tensor
    """[num_requests, max blocks] int32: each request's block table (the blocks its context
    covers), padded with block 0."""
    block_tables: torch.Tensor
    """The same block tables, on the host (int64)."""
    block_tables_host: np.ndarray

    @staticmethod
    def build(
        *,
        query_lens: Sequence[int] | np.ndarray,
        seq_lens: Sequence[int] | np.ndarray,
        block_tables: np.ndarray | Sequence[Sequence[int]],
        block_size: int,
        device: torch.device,
    ) -> "AttentionMetadata":
        """`block_tables`: a [requests, blocks] array (a worker's tables, padded) or one list
        per request; row i must cover `seq_lens[i]` tokens (the caller has checked that). Blocks
        past the longest context (a policy may reserve a table for the longest output) are left
        out, and so are those past a request's own context."""
        query = np.asarray(query_lens, dtype=np.int64)
        seq = np.asarray(seq_lens, dtype=np.int64)
        width = max(1, int(-(-seq.max(initial=0) // block_size)))
        if isinstance(block_tables, np.ndarray):
            tables = block_tables[:, :width].astype(np.int64)
        else:
            tables = np.zeros((len(block_tables), width), dtype=np.int64)
            for row, table in enumerate(block_tables):
                tables[row, : min(width, len(table))] = table[:width]
        beyond = np.arange(width)[None, :] >= -(-seq[:, None] // block_size)
        tables[beyond] = 0

        request_of_token = np.repeat(np.arange(len(query)), query)
        query_starts = np.concatenate(([0], np.cumsum(query)))
        offset_in_query = np.arange(int(query.sum())) - query_starts[request_of_token]
        positions = (seq - query)[request_of_token] + offset_in_query
        slots = tables[request_of_token, positions // block_size] * block_size + positions % block_size

        def to_device(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(array).to(device=device, dtype=dtype, non_blocking=True)

        return AttentionMetadata(
            block_size=block_size,
            query_lens=tuple(int(n) for n in query),
            seq_lens=tuple(int(n) for n in seq),
            max_query_len=int(query.max(initial=0)),
            max_seq_len=int(seq.max(initial=0)),
            positions=to_device(positions, torch.int64),
            slot_mapping=to_device(slots, torch.int64),
            query_start_loc=to_device(query_starts, torch.int32),
            seq_start_loc=to_device(np.concatenate(([0], np.cumsum(seq))), torch.int32),
            seq_lens_tensor=to_device(seq, torch.int32),
            block_tables=to_device(tables, torch.int32),
            block_tables_host=tables,
        )

    def context_slots(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """The cache slot of every context token of requests `rows` (None: all), request after
        request, on the CPU ([sum of their seq_lens] int64)."""
        requests = np.arange(len(self.seq_lens)) if rows is None else np.asarray(rows, dtype=np.int64)
        seq = np.asarray(self.seq_lens, dtype=np.int64)[requests]
        request_of_token = np.repeat(requests, seq)
        starts = np.concatenate(([0], np.cumsum(seq)))
        positions = np.arange(int(seq.sum())) - np.repeat(starts[:-1], seq)
        tables = self.block_tables_host
        return tables[request_of_token, positions // self.block_size] * self.block_size + positions % self.block_size
