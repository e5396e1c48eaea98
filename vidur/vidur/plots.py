"""Figures of a simulated run: latency distributions and what the replicas did over time."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vidur.simulation import SimulationResult  # noqa: E402
from vidur.time_buckets import mean_per_time_bucket  # noqa: E402

# More iterations than this are drawn as means per bucket of simulated time, this many buckets.
MAX_ITERATIONS_DRAWN = 2000
NUM_TIME_BUCKETS = 500


def _cdf(axis: plt.Axes, values: np.ndarray, title: str) -> None:
    data = np.sort(np.asarray(values, dtype=np.float64))
    if len(data):
        axis.plot(data, np.arange(1, len(data) + 1) / len(data))
    axis.set_title(title)
    axis.set_xlabel("seconds")
    axis.set_ylabel("fraction of requests" if "TBT" not in title else "fraction of gaps")
    axis.grid(alpha=0.3)


def plot_latencies(ttft_s: np.ndarray, tbt_s: np.ndarray, normalized_latency_s: np.ndarray, path: Path) -> None:
    """CDFs of the completed requests' TTFTs, TBTs and normalized latencies."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    _cdf(axes[0], ttft_s, "TTFT")
    _cdf(axes[1], tbt_s, "TBT")
    _cdf(axes[2], normalized_latency_s, "normalized latency")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_iterations(result: SimulationResult, path: Path) -> None:
    it = result.iterations
    figure, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    num_blocks = result.deployment.memory.num_blocks
    end_s = float(it["end_s"].max()) if len(it["end_s"]) else 0.0
    bucket_s = end_s / NUM_TIME_BUCKETS if len(it["start_s"]) > MAX_ITERATIONS_DRAWN and end_s > 0 else None
    for replica in range(result.deployment.num_replicas):
        mine = it["replica"] == replica
        start = it["start_s"][mine]
        label = f"replica {replica}"
        tokens = it["num_prefill_tokens"][mine].astype(np.int64) + it["num_decode_tokens"][mine]
        points = mean_per_time_bucket(start, tokens, bucket_s) if bucket_s else (start, tokens)
        axes[0].plot(*points, lw=0.5 if bucket_s is None else 1.0, label=label)
        axes[1].plot(start, it["num_blocks_used"][mine] / num_blocks, lw=0.5, label=label)
        axes[2].plot(start, it["num_waiting"][mine], lw=0.5, label=label)
    axes[0].set_ylabel("tokens per iteration" + (f"\n(mean per {bucket_s:.3g} s)" if bucket_s else ""))
    axes[1].set_ylabel("KV cache used")
    axes[2].set_ylabel("requests waiting")
    axes[2].set_xlabel("simulated time (s)")
    if result.deployment.num_replicas <= 8:
        axes[0].legend(loc="upper right", fontsize="small")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
