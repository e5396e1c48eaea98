"""What both paged attention kernels do with one tile of a sequence's context: gather its keys and
values through the block table, and fold its scores into the running (flash-attention) softmax.
Triton inlines these into each kernel."""

import triton
import triton.language as tl


@triton.jit
def load_kv_tile(
    key_base, value_base, table, positions, valid, dim_mask, block_size, stride_cache_block, stride_cache_slot
):
    """Keys and values `[tile, DIM_PAD]` at context `positions` (zeros where not `valid`)."""
    blocks = tl.load(table + positions // block_size, mask=valid, other=0).to(tl.int64)
    offsets = (blocks * stride_cache_block + (positions % block_size) * stride_cache_slot)[:, None]
    kv_mask = valid[:, None] & dim_mask[None, :]
    keys = tl.load(key_base + offsets, mask=kv_mask, other=0.0)
    values = tl.load(value_base + offsets, mask=kv_mask, other=0.0)
    return keys, values


@triton.jit
def online_softmax_step(scores, values, running_max, running_sum, accumulated, PRECISION: tl.constexpr):
    """`scores` (base 2, -inf where hidden) of one tile folded into the running maximum, sum of
    exponentials and weighted sum of values of each query row."""
    new_max = tl.maximum(running_max, tl.max(scores, axis=1))
    # A row that has seen no visible key yet keeps zeros (exp2(-inf) = 0, never -inf - -inf).
    shift = tl.where(new_max == float("-inf"), 0.0, new_max)
    probabilities = tl.exp2(scores - shift[:, None])
    rescale = tl.exp2(running_max - shift)
    running_sum = running_sum * rescale + tl.sum(probabilities, axis=1)
    accumulated = accumulated * rescale[:, None] + tl.dot(
        probabilities.to(values.dtype), values, input_precision=PRECISION
    )
    return new_max, running_sum, accumulated
