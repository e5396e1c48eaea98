"""Per-iteration values averaged over buckets of simulated time (what iterations.png plots when a
run has too many iterations to draw one by one)."""

import numpy as np

from vidur.time_buckets import mean_per_time_bucket


def test_each_bucket_is_the_mean_of_the_iterations_starting_in_it() -> None:
    starts = np.array([0.0, 0.4, 1.0, 1.5, 3.2])
    tokens = np.array([10, 20, 30, 50, 7])
    middles, means = mean_per_time_bucket(starts, tokens, bucket_s=1.0)
    assert middles.tolist() == [0.5, 1.5, 2.5, 3.5]
    # [0, 1): 10 and 20; [1, 2): 30 and 50 (a start on the edge opens the next bucket); [2, 3):
    # none, a gap in the line; [3, 4): 7.
    assert means[[0, 1, 3]].tolist() == [15.0, 40.0, 7.0] and np.isnan(means[2])


def test_no_iterations_no_buckets() -> None:
    middles, means = mean_per_time_bucket(np.zeros(0), np.zeros(0), bucket_s=0.5)
    assert len(middles) == 0 and len(means) == 0
