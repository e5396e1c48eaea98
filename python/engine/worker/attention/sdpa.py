"""Attention through PyTorch's `scaled_dot_product_attention`, on any device.

Decodes (one query token each) run together in one call over their gathered contexts (as many
blocks as the longest decode's context needs) with a length mask; each prefill chunk runs in its
own call (a step holds few of them: the token budget bounds them), causal when it starts the
sequence, else with an explicit mask over its cached prefix.

With grouped-query attention, the masked calls fold each KV head's group of query heads into
the query rows, so keys and values have exactly the queries' batch and head dimensions. That
avoids `enable_gqa`, which on CUDA limits SDPA to the flash kernel (no mask) or the math one;
the memory-efficient kernel takes the mask.

On the CPU a masked SDPA call runs PyTorch's math kernel, whose softmax first checks every row
for being wholly masked (isneginf, all, where: a fifth of a chunk step's time); a chunk after a
cached prefix is computed here instead as one batched matmul onto an additive mask (built once
per step), a softmax and a matmul, 1.8-2.9x faster (no row of a chunk is wholly masked: each
query sees its own key). Decodes keep SDPA, as fast on the CPU as that.

A fixed-shape decode (`prepare_decode`, what a CUDA graph replays) gathers every row's whole
padded block table, so its cost grows with the table's width (see `engine.worker.decode_buckets`).
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from engine.worker.attention.backend import AttentionBackend, AttentionLayer, DecodeInputs, write_kv
from engine.worker.attention.metadata import AttentionMetadata


@dataclass(frozen=True, slots=True)
class PrefillSegment:
    token_start: int
    query_len: int
    seq_len: int
    """[seq_len] int64: the cache slots of this request's context, in position order."""
    context_slots: torch.Tensor

    def mask(self, sliding_window: int | None, group: int) -> torch.Tensor | None:
        """[group * query_len, seq_len] bool (the rows of each query head of a group, one group
        member after another), or None when plain causal attention (`is_causal`) is exact."""
        window_cuts = sliding_window is not None and sliding_window < self.seq_len
        if self.query_len == self.seq_len and not window_cuts:
            return None
        device = self.context_slots.device
        query_positions = torch.arange(self.seq_len - self.query_len, self.seq_len, device=device)[:, None]
        key_positions = torch.arange(self.seq_len, device=device)[None, :]
        visible = key_positions <= query_positions
        if sliding_window is not None:
            visible &= key_positions > query_positions - sliding_window
        return visible.repeat(group, 1)


@dataclass(slots=True)
class SdpaPlan:
    """What every layer of one step shares."""

    """The step's metadata; None for a decode prepared from fixed-shape inputs (`prepare_decode`)."""
    metadata: AttentionMetadata | None
    block_size: int
    """[num_tokens] int64: each new token's cache slot."""
    slot_mapping: torch.Tensor
    """[num_decodes] int64: where each decode's token sits in the flattened batch."""
    decode_token_index: torch.Tensor
    """[num_decodes, blocks of the longest decode context] int64."""
    decode_block_tables: torch.Tensor
    """[num_decodes] int64."""
    decode_seq_lens: torch.Tensor
    prefills: tuple[PrefillSegment, ...]
    # Masks are built once per step and sliding window, then shared by the layers.
    decode_masks: dict[int | None, torch.Tensor] = field(default_factory=dict)
    prefill_masks: dict[tuple[int, int | None, int], torch.Tensor | None] = field(default_factory=dict)
    """Prefill masks as additive float masks (0 or -inf), for the CPU's matmul attention."""
    additive_prefill_masks: bool = False

    def decode_mask(self, sliding_window: int | None) -> torch.Tensor:
        """[num_decodes, 1, 1, context width] bool: which gathered keys each decode may see."""
        mask = self.decode_masks.get(sliding_window)
        if mask is None:
            width = self.decode_block_tables.shape[1] * self.block_size
            positions = torch.arange(width, device=self.decode_seq_lens.device)[None, :]
            seq_lens = self.decode_seq_lens[:, None]
            visible = positions < seq_lens
            if sliding_window is not None:
                visible &= positions >= seq_lens - sliding_window
            mask = self.decode_masks[sliding_window] = visible[:, None, None, :]
        return mask

    def prefill_mask(
        self, index: int, sliding_window: int | None, group: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        key = (index, sliding_window, group)
        if key not in self.prefill_masks:
            mask = self.prefills[index].mask(sliding_window, group)
            if mask is not None and self.additive_prefill_masks:
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
            self.prefill_masks[key] = mask
        return self.prefill_masks[key]


class SdpaAttention(AttentionBackend[SdpaPlan]):
    name = "sdpa"
    captures_decode = True

    def prepare(self, metadata: AttentionMetadata) -> SdpaPlan:
        device = metadata.slot_mapping.device
        query_starts = [0]
        for query_len in metadata.query_lens:
            query_starts.append(query_starts[-1] + query_len)
        decode_rows = [row for row, query_len in enumerate(metadata.query_lens) if query_len == 1]
        prefill_rows = [row for row, query_len in enumerate(metadata.query_lens) if query_len > 1]

        prefills: list[PrefillSegment] = []
        if prefill_rows:
            # Only the prefill rows read their contexts slot by slot; decodes gather whole blocks.
            prefill_slots = torch.from_numpy(metadata.context_slots(prefill_rows)).to(device)
            start = 0
            for row in prefill_rows:
                seq_len = metadata.seq_lens[row]
                slots = prefill_slots[start : start + seq_len]
                prefills.append(PrefillSegment(query_starts[row], metadata.query_lens[row], seq_len, slots))
                start += seq_len

        rows = torch.tensor(decode_rows, dtype=torch.int64, device=device)
        longest_decode = max((metadata.seq_lens[row] for row in decode_rows), default=0)
        decode_width = -(-longest_decode // metadata.block_size)
        return SdpaPlan(
            metadata=metadata,
            block_size=metadata.block_size,
            slot_mapping=metadata.slot_mapping,
            decode_token_index=torch.tensor(
                [query_starts[row] for row in decode_rows], dtype=torch.int64, device=device
            ),
            decode_block_tables=metadata.block_tables[:, :decode_width].index_select(0, rows).long(),
            decode_seq_lens=metadata.seq_lens_tensor.index_select(0, rows).long(),
            prefills=tuple(prefills),
            additive_prefill_masks=device.type == "cpu",
        )

    def prepare_decode(self, decode: DecodeInputs) -> SdpaPlan:
        """Every row a decode: each gathers its whole (fixed-width) block table."""
        rows = torch.arange(decode.seq_lens.shape[0], device=decode.seq_lens.device)
        return SdpaPlan(
            metadata=None,
            block_size=decode.block_size,
            slot_mapping=decode.slot_mapping,
            decode_token_index=rows,
            decode_block_tables=decode.block_tables.long(),
            decode_seq_lens=decode.seq_lens.long(),
            prefills=(),
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        plan: SdpaPlan,
        layer: AttentionLayer,
    ) -> torch.Tensor:
        write_kv(key, value, kv_cache, plan.slot_mapping)
        output = torch.empty_like(query)
        if plan.decode_token_index.numel():
            output.index_copy_(0, plan.decode_token_index, self._decode(query, kv_cache, plan, layer))
        group = layer.num_heads // layer.num_kv_heads
        flat_keys = kv_cache[0].view(-1, layer.num_kv_heads, layer.head_dim)
        flat_values = kv_cache[1].view(-1, layer.num_kv_heads, layer.head_dim)
        for index, segment in enumerate(plan.prefills):
            rows = slice(segment.token_start, segment.token_start + segment.query_len)
            output[rows] = self._prefill(
                query[rows],
                flat_keys.index_select(0, segment.context_slots),
                flat_values.index_select(0, segment.context_slots),
                plan.prefill_mask(index, layer.sliding_window, group, query.dtype),
                layer,
            )
        return output

    @staticmethod
    def _decode(query: torch.Tensor, kv_cache: torch.Tensor, plan: SdpaPlan, layer: AttentionLayer) -> torch.Tensor:
        num_decodes, width = plan.decode_block_tables.shape
        # [2, num_decodes * blocks, block_size, kv_heads, head_dim] -> [2, num_decodes, kv_heads, context, head_dim]
        context = kv_cache.index_select(1, plan.decode_block_tables.flatten())
        context = context.view(2, num_decodes, width * plan.block_size, layer.num_kv_heads, layer.head_dim)
        context = context.transpose(2, 3)
        # A KV head's group of query heads are its query rows: [num_decodes, kv_heads, group, head_dim].
        queries = query.index_select(0, plan.decode_token_index)
        queries = queries.view(num_decodes, layer.num_kv_heads, layer.num_heads // layer.num_kv_heads, layer.head_dim)
        attended = F.scaled_dot_product_attention(
            queries, context[0], context[1], attn_mask=plan.decode_mask(layer.sliding_window), scale=layer.scale
        )
        return attended.reshape(num_decodes, layer.num_heads, layer.head_dim)

    @staticmethod
    def _prefill(
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None,
        layer: AttentionLayer,
    ) -> torch.Tensor:
        if mask is None:  # no mask: SDPA's flash kernel can run it, GQA included
            attended = F.scaled_dot_product_attention(
                queries.transpose(0, 1),
                keys.transpose(0, 1),
                values.transpose(0, 1),
                is_causal=True,
                scale=layer.scale,
                enable_gqa=layer.num_heads != layer.num_kv_heads,
            )
            return attended.transpose(0, 1)
        # [query_len, heads, head_dim] -> [kv_heads, group * query_len, head_dim]: each KV head's
        # group of query heads, one after another, as the mask's rows are.
        query_len = queries.shape[0]
        folded = queries.transpose(0, 1).reshape(layer.num_kv_heads, -1, layer.head_dim)
        if mask.dtype == torch.bool:
            attended = F.scaled_dot_product_attention(
                folded, keys.transpose(0, 1), values.transpose(0, 1), attn_mask=mask, scale=layer.scale
            )
        else:  # an additive mask: the CPU's attention (see the module's docstring)
            scores = torch.baddbmm(
                mask.expand(layer.num_kv_heads, -1, -1), folded, keys.permute(1, 2, 0), alpha=layer.scale
            )
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
            attended = torch.bmm(weights, values.transpose(0, 1))
        return attended.reshape(layer.num_heads, query_len, layer.head_dim).transpose(0, 1)
