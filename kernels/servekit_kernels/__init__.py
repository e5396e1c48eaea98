"""servekit's Triton kernels, each beside the plain-PyTorch reference that defines what it computes.

The paged KV cache of a layer is `key_cache`, `value_cache` `[num_blocks, block_size,
num_kv_heads, head_dim]` (the engine's `kv_cache[0]`, `kv_cache[1]`), addressed through block
tables `[num_seqs, max_blocks]` int32 and slots (block id * block_size + offset).

On a machine without a GPU the kernels run in Triton's interpreter: set `TRITON_INTERPRET=1`
before this package is imported, and pass CPU tensors, float32 or float16 (the interpreter's
bfloat16 arithmetic is wrong, so bfloat16 is checked on GPUs only).
"""

from servekit_kernels._interpreter_fix import fix_interpreter_loop_bounds
from servekit_kernels.kv_cache_write import write_kv_cache, write_kv_cache_reference
from servekit_kernels.paged_decode import default_num_splits, paged_decode_attention, paged_decode_attention_reference
from servekit_kernels.paged_prefill import (
    block_q,
    paged_prefill_attention,
    paged_prefill_attention_reference,
    prefill_tiles,
)
from servekit_kernels.rms_norm import rms_norm, rms_norm_reference
from servekit_kernels.rotary import rotary_embedding, rotary_embedding_reference
from servekit_kernels.silu_and_mul import silu_and_mul, silu_and_mul_reference

fix_interpreter_loop_bounds()

__all__ = [
    "block_q",
    "default_num_splits",
    "paged_decode_attention",
    "paged_decode_attention_reference",
    "paged_prefill_attention",
    "paged_prefill_attention_reference",
    "prefill_tiles",
    "rms_norm",
    "rms_norm_reference",
    "rotary_embedding",
    "rotary_embedding_reference",
    "silu_and_mul",
    "silu_and_mul_reference",
    "write_kv_cache",
    "write_kv_cache_reference",
]
