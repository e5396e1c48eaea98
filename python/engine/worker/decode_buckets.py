"""The fixed shapes a decode-only step is padded to, so a few captured CUDA graphs cover every
decode batch: a batch of `n` requests runs at the smallest batch size >= n, its block tables at
the smallest width >= the blocks its longest context needs.

Batch sizes: 1, 2, 4, 8, then steps of 8 up to 256, then steps of 16, up to `max_num_seqs`
(itself always one of them). Widths (blocks per row): a backend that reads pages in place pays nothing
for width, so it gets one, the longest table (`max_model_len`); one that gathers every row's
whole table (sdpa) gets powers of two up to it, and only those whose gather stays within
`MAX_GATHERED_TOKENS` context tokens; wider decode batches run eagerly.
"""

import bisect
from dataclasses import dataclass

SMALL_BATCH_SIZES = (1, 2, 4, 8)
FINE_STEP, FINE_UP_TO, COARSE_STEP = 8, 256, 16
MAX_GATHERED_TOKENS = 1 << 16


@dataclass(frozen=True, slots=True, order=True)
class DecodeBucket:
    batch_size: int
    """Blocks per row of the padded block tables."""
    width: int


def decode_batch_sizes(max_num_seqs: int) -> list[int]:
    if max_num_seqs < 1:
        raise ValueError(f"max_num_seqs must be at least 1, got {max_num_seqs}")
    sizes = list(SMALL_BATCH_SIZES) + list(range(2 * FINE_STEP, FINE_UP_TO + 1, FINE_STEP))
    sizes += range(FINE_UP_TO + COARSE_STEP, max_num_seqs + 1, COARSE_STEP)
    sizes = [size for size in sizes if size < max_num_seqs]
    return [*sizes, max_num_seqs]


def decode_widths(max_blocks: int, reads_pages: bool) -> list[int]:
    if max_blocks < 1:
        raise ValueError(f"max_blocks must be at least 1, got {max_blocks}")
    if reads_pages:
        return [max_blocks]
    widths = [1 << power for power in range(max_blocks.bit_length()) if 1 << power < max_blocks]
    return [*widths, max_blocks]


class DecodeBuckets:
    """Every (batch size, width) pair there is a padded shape for."""

    def __init__(self, *, max_num_seqs: int, max_blocks: int, block_size: int, reads_pages: bool) -> None:
        self.batch_sizes = decode_batch_sizes(max_num_seqs)
        self.widths = decode_widths(max_blocks, reads_pages)
        self.max_width_of: dict[int, int] = {}
        for batch_size in self.batch_sizes:
            fitting = [
                width
                for width in self.widths
                if reads_pages or batch_size * width * block_size <= MAX_GATHERED_TOKENS or width == self.widths[0]
            ]
            self.max_width_of[batch_size] = fitting[-1]
        self.all = [
            DecodeBucket(batch_size, width)
            for batch_size in self.batch_sizes
            for width in self.widths
            if width <= self.max_width_of[batch_size]
        ]

    def __len__(self) -> int:
        return len(self.all)

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    def choose(self, num_seqs: int, num_blocks: int) -> DecodeBucket | None:
        """The smallest shape that holds `num_seqs` rows of `num_blocks` blocks; None if none does."""
        if not 1 <= num_seqs <= self.max_batch_size or num_blocks > self.max_width:
            return None
        batch_size = self.batch_sizes[bisect.bisect_left(self.batch_sizes, num_seqs)]
        width = self.widths[bisect.bisect_left(self.widths, max(1, num_blocks))]
        if width > self.max_width_of[batch_size]:
            return None
        return DecodeBucket(batch_size, width)
