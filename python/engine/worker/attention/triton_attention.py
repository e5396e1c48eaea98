"""The engine's own Triton kernels (`servekit_kernels`, the `kernels/` project): the step's new
keys and values are written into the paged cache by a kernel, then one launch of paged decode
attention covers every decode and one of paged prefill attention every prefill chunk, both
reading the block tables directly, so no context is ever gathered.

Runs on CUDA GPUs; on the CPU only under Triton's interpreter (`TRITON_INTERPRET=1` in the
worker's environment), which is slow and meant for tests, and there in float32 or float16 only.
Any block size, GQA/MQA, sliding windows, float32, float16 and (on CUDA) bfloat16.

Decodes split their contexts flash-decoding style; the number of splits depends only on the
number of decodes, the KV heads, the longest context a step may hold (`max_model_len`, else the
step's longest, or a fixed-shape decode's table width) and the device, never on the step's
lengths. So a decode-only step in fixed shapes (`prepare_decode`) launches the same grids
whatever its lengths, and is captured in CUDA graphs; its cost does not grow with the width of
its block tables (the kernel reads only the pages a context covers).
"""

import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import torch

from engine.worker.attention.backend import AttentionBackend, AttentionLayer, DecodeInputs
from engine.worker.attention.metadata import AttentionMetadata

MAX_HEAD_DIM = 256
# Programs per streaming multiprocessor that decode splits aim for.
PROGRAMS_PER_SM = 2


def triton_unsupported_reason(device: torch.device, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why the Triton kernels cannot run this model here, or None when they can."""
    if importlib.util.find_spec("servekit_kernels") is None:
        return "the servekit_kernels package (kernels/ in this repository) is not installed"
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"it takes float32, float16 or bfloat16, not {dtype}"
    if head_dim > MAX_HEAD_DIM:
        return f"it needs a head_dim up to {MAX_HEAD_DIM}, not {head_dim}"
    if device.type == "cuda":
        return None
    import triton

    if device.type == "cpu" and triton.knobs.runtime.interpret:
        # Its bfloat16 arithmetic is wrong (a plain 16x16 dot is off by orders of magnitude).
        return "Triton's interpreter computes bfloat16 wrongly: use float32 or float16" if dtype == torch.bfloat16 else None
    return f"it runs on CUDA, or on the CPU under Triton's interpreter (TRITON_INTERPRET=1), not on {device.type}"


@dataclass(slots=True)
class TritonPlan:
    """What every layer of one step shares."""

    """The step's metadata; None for a decode prepared from fixed-shape inputs (`prepare_decode`)."""
    metadata: AttentionMetadata | None
    """[num_tokens] int64: each new token's cache slot."""
    slot_mapping: torch.Tensor
    """[num_decodes] int64: where each decode's token sits in the flattened batch; None when
    every request of the step is a decode (its rows are then the batch's own)."""
    decode_tokens: torch.Tensor | None
    """The decodes' block tables and context lengths (the whole batch's when all decode)."""
    decode_block_tables: torch.Tensor
    decode_seq_lens: torch.Tensor
    num_decodes: int
    """The longest context a decode of the step may have: the decode splits are sized by it."""
    max_decode_context: int
    """Query lengths of the requests that are prefill chunks (0 for the decodes); empty when all decode."""
    prefill_query_lens: list[int]
    # Per queries-per-program count: the prefill kernel's (request, query offset) of each program.
    prefill_tiles: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def tiles(self, tokens_per_tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        tiles = self.prefill_tiles.get(tokens_per_tile)
        if tiles is None:
            from servekit_kernels import prefill_tiles

            device = self.slot_mapping.device
            requests, offsets = prefill_tiles(self.prefill_query_lens, tokens_per_tile)
            tiles = self.prefill_tiles[tokens_per_tile] = (
                torch.from_numpy(requests).to(device, non_blocking=True),
                torch.from_numpy(offsets).to(device, non_blocking=True),
            )
        return tiles


class TritonAttention(AttentionBackend[TritonPlan]):
    name = "triton"
    captures_decode = True
    decode_reads_pages = True

    def __init__(self, device: torch.device, dtype: torch.dtype, head_dim: int, max_model_len: int | None) -> None:
        reason = triton_unsupported_reason(device, dtype, head_dim)
        if reason is not None:
            raise ValueError(f"attention backend 'triton' cannot run: {reason}")
        import servekit_kernels

        self._kernels: ModuleType = servekit_kernels
        self.max_model_len = max_model_len
        # The interpreter runs programs one after another: there, fewer is faster.
        self.num_programs = (
            torch.cuda.get_device_properties(device).multi_processor_count * PROGRAMS_PER_SM
            if device.type == "cuda"
            else 1
        )

    def prepare(self, metadata: AttentionMetadata) -> TritonPlan:
        device = metadata.slot_mapping.device
        is_decode = [query_len == 1 for query_len in metadata.query_lens]
        num_decodes = sum(is_decode)
        if num_decodes == len(is_decode):
            decode_tokens = None
            tables, seq_lens = metadata.block_tables, metadata.seq_lens_tensor
        else:
            rows = [row for row, decode in enumerate(is_decode) if decode]
            token_starts = np.concatenate(([0], np.cumsum(metadata.query_lens)))
            decode_tokens = torch.from_numpy(token_starts[rows]).to(device, non_blocking=True)
            row_index = torch.tensor(rows, dtype=torch.int64, device=device)
            tables = metadata.block_tables.index_select(0, row_index)
            seq_lens = metadata.seq_lens_tensor.index_select(0, row_index)
        return TritonPlan(
            metadata=metadata,
            slot_mapping=metadata.slot_mapping,
            decode_tokens=decode_tokens,
            decode_block_tables=tables,
            decode_seq_lens=seq_lens,
            num_decodes=num_decodes,
            max_decode_context=self.max_model_len or metadata.max_seq_len,
            prefill_query_lens=(
                [] if decode_tokens is None
                else [0 if decode else n for n, decode in zip(metadata.query_lens, is_decode, strict=True)]
            ),
        )

    def prepare_decode(self, decode: DecodeInputs) -> TritonPlan:
        """Every row a decode, read in place through its block table: no host work, so nothing
        here or in `forward` synchronizes or depends on the lengths."""
        return TritonPlan(
            metadata=None,
            slot_mapping=decode.slot_mapping,
            decode_tokens=None,
            decode_block_tables=decode.block_tables,
            decode_seq_lens=decode.seq_lens,
            num_decodes=decode.seq_lens.shape[0],
            max_decode_context=self.max_model_len or decode.block_tables.shape[1] * decode.block_size,
            prefill_query_lens=[],
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        plan: TritonPlan,
        layer: AttentionLayer,
    ) -> torch.Tensor:
        kernels = self._kernels
        key_cache, value_cache = kv_cache[0], kv_cache[1]
        kernels.write_kv_cache(key, value, key_cache, value_cache, plan.slot_mapping)
        output = torch.empty_like(query)
        if plan.num_decodes:
            num_splits = kernels.default_num_splits(
                plan.num_decodes, layer.num_kv_heads, plan.max_decode_context, self.num_programs
            )
            decode_query = query if plan.decode_tokens is None else query.index_select(0, plan.decode_tokens)
            decoded = kernels.paged_decode_attention(
                decode_query,
                key_cache,
                value_cache,
                plan.decode_block_tables,
                plan.decode_seq_lens,
                layer.scale,
                layer.sliding_window,
                num_splits=num_splits,
                output=output if plan.decode_tokens is None else None,
            )
            if plan.decode_tokens is not None:
                output.index_copy_(0, plan.decode_tokens, decoded)
        if plan.prefill_query_lens:
            metadata = plan.metadata
            assert metadata is not None  # a fixed-shape decode has no prefills
            kernels.paged_prefill_attention(
                query,
                key_cache,
                value_cache,
                metadata.block_tables,
                metadata.query_start_loc,
                metadata.seq_lens_tensor,
                layer.scale,
                layer.sliding_window,
                tiles=plan.tiles(kernels.block_q(layer.num_heads // layer.num_kv_heads)),
                output=output,
            )
        return output
