"""The correctness baseline: one request at a time, its context gathered block by block, the
attention computed in float32 with an explicit mask. Slow and plain on purpose."""

import torch

from engine.worker.attention.backend import AttentionBackend, AttentionLayer, write_kv
from engine.worker.attention.metadata import AttentionMetadata


class ReferenceAttention(AttentionBackend[AttentionMetadata]):
    name = "reference"

    def prepare(self, metadata: AttentionMetadata) -> AttentionMetadata:
        return metadata

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        metadata: AttentionMetadata,
        layer: AttentionLayer,
    ) -> torch.Tensor:
        write_kv(key, value, kv_cache, metadata.slot_mapping)
        output = torch.empty_like(query)
        group = layer.num_heads // layer.num_kv_heads
        block_size = metadata.block_size
        start = 0
        for row, (query_len, seq_len) in enumerate(zip(metadata.query_lens, metadata.seq_lens, strict=True)):
            num_blocks = -(-seq_len // block_size)
            blocks = metadata.block_tables[row, :num_blocks].long()
            keys = kv_cache[0, blocks].reshape(-1, layer.num_kv_heads, layer.head_dim)[:seq_len]
            values = kv_cache[1, blocks].reshape(-1, layer.num_kv_heads, layer.head_dim)[:seq_len]
            keys = keys.float().repeat_interleave(group, dim=1)
            values = values.float().repeat_interleave(group, dim=1)
            queries = query[start : start + query_len].float()

            scores = torch.einsum("qhd,khd->hqk", queries, keys) * layer.scale
            query_positions = torch.arange(seq_len - query_len, seq_len, device=query.device)[:, None]
            key_positions = torch.arange(seq_len, device=query.device)[None, :]
            visible = key_positions <= query_positions
            if layer.sliding_window is not None:
                visible &= key_positions > query_positions - layer.sliding_window
            scores = scores.masked_fill(~visible, float("-inf"))
            probabilities = torch.softmax(scores, dim=-1)
            output[start : start + query_len] = torch.einsum("hqk,khd->qhd", probabilities, values).to(query.dtype)
            start += query_len
        return output
