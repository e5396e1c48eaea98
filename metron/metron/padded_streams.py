"""Streams of different lengths (given end to end in one array) grouped by similar length and
padded into 2-D arrays, so numpy scores a whole group at once with little padding."""

from collections.abc import Iterator

import numpy as np

_BUCKET_GROWTH = 1.25
_BUCKET_MAX_ELEMENTS = 1 << 20


def similar_length_buckets(lengths: np.ndarray) -> Iterator[np.ndarray]:
    """Indices of streams grouped by similar length, shortest first: a bucket's longest stream is
    at most 25% (or 16 entries) longer than its shortest, and a bucket holds at most 2**20
    entries (padded) unless one stream alone is longer."""
    order = np.argsort(lengths, kind="stable")
    ordered = np.asarray(lengths)[order]
    start = 0
    while start < len(order):
        shortest = int(ordered[start])
        end = int(np.searchsorted(ordered, max(shortest * _BUCKET_GROWTH, shortest + 16), side="right"))
        more = np.arange(start + 1, end)
        too_big = np.flatnonzero((more - start + 1) * ordered[more] > _BUCKET_MAX_ELEMENTS)
        if len(too_big):
            end = int(more[too_big[0]])
        yield order[start:end]
        start = end


def pad_rows(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `values[starts[k]:starts[k] + lengths[k]]`, zero-padded to the longest: (2-D int64
    array, padding per row)."""
    width = int(lengths.max())
    padded = np.zeros((len(lengths), width), dtype=np.int64)
    within_row = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[np.arange(width) < lengths[:, None]] = values[np.repeat(starts, lengths) + within_row]
    return padded, width - lengths
