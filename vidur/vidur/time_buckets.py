"""Many iterations as few points: a per-iteration value averaged over buckets of simulated time,
so a plot of a long run shows its trend instead of a solid block of alternating values."""

import numpy as np


def mean_per_time_bucket(start_s: np.ndarray, values: np.ndarray, bucket_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The middle of each bucket `[k * bucket_s, (k + 1) * bucket_s)` from 0 to the last start,
    and the mean of `values` over the iterations starting in it (NaN where none does)."""
    if not bucket_s > 0:
        raise ValueError(f"bucket_s must be positive, got {bucket_s}")
    if len(start_s) == 0:
        return np.zeros(0), np.zeros(0)
    bucket = np.floor(np.asarray(start_s, dtype=np.float64) / bucket_s).astype(np.int64)
    sums = np.bincount(bucket, weights=np.asarray(values, dtype=np.float64))
    counts = np.bincount(bucket)
    means = np.full(len(counts), np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return (np.arange(len(counts)) + 0.5) * bucket_s, means
