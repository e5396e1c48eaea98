"""The figures people look at, as PNG files (matplotlib, no display needed)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metron.metrics import RequestRecord  # noqa: E402

_CDFS = (("ttft_s", "TTFT (s)"), ("tbt_s", "TBT (s)"), ("normalized_latency_s", "normalized latency (s/token)"))


def _values(records: Sequence[RequestRecord], name: str) -> np.ndarray:
    completed = [r for r in records if r.completed and not r.warmup]
    if name == "tbt_s":
        return np.array([gap for r in completed for gap in r.tbt_s])
    return np.array([getattr(r, name) for r in completed if getattr(r, name) is not None])


def _cdf(axis: plt.Axes, values: np.ndarray, label: str) -> None:
    if len(values):
        ordered = np.sort(values)
        axis.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=label)


def latency_cdfs(runs: dict[str, Sequence[RequestRecord]], path: Path) -> Path:
    """CDFs of TTFT, TBT and normalized latency; one line per run."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, (name, title) in zip(axes, _CDFS, strict=True):
        for label, records in runs.items():
            _cdf(axis, _values(records, name), label)
        axis.set_xlabel(title)
        axis.set_ylabel("fraction of " + ("gaps" if name == "tbt_s" else "requests"))
        axis.grid(alpha=0.3)
    if len(runs) > 1:
        axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def fluidity_curve(runs: dict[str, dict[str, object]], tbt_deadline_s: float | None, path: Path) -> Path:
    """P99 over requests of the deadline miss rate against the target TBT (Metron's fluidity curve)."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for label, metrics in runs.items():
        deadlines = metrics.get("miss_rate_curve.tbt_deadline_s")
        rates = metrics.get("miss_rate_curve.p99_miss_rate")
        if isinstance(deadlines, list) and isinstance(rates, list):
            axis.plot(deadlines, rates, marker=".", label=label)
    axis.axhline(0.1, color="grey", linestyle="--", linewidth=1, label="10% misses")
    if tbt_deadline_s is not None:
        axis.axvline(tbt_deadline_s, color="red", linestyle=":", linewidth=1, label=f"D_d = {tbt_deadline_s:g} s")
    axis.set_xscale("log")
    axis.set_xlabel("target TBT deadline (s)")
    axis.set_ylabel("P99 deadline miss rate")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def tokens_over_time(records: Sequence[RequestRecord], path: Path, num_requests: int = 6) -> Path:
    """Cumulative output tokens against time since the send, for requests spread over the range
    of end-to-end latencies (fastest to slowest, interrupted ones included), so stalls show as flat steps."""
    streamed = sorted((r for r in records if not r.warmup and r.e2e_s is not None), key=lambda r: r.e2e_s or 0)
    spread = np.unique(np.linspace(0, len(streamed) - 1, num_requests).astype(int)) if streamed else []
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for record in (streamed[int(i)] for i in spread):
        times = np.array(record.token_times_s) - record.arrival_s
        axis.step(times, np.arange(1, len(times) + 1), where="post", label=f"request {record.id}")
    axis.set_xlabel("time since send (s)")
    axis.set_ylabel("output tokens received")
    axis.grid(alpha=0.3)
    if streamed:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def capacity_path(steps: Sequence[tuple[float, bool]], capacity_qps: float, path: Path) -> Path:
    """Each run of a capacity search: its request rate, passed or failed, in search order."""
    figure, axis = plt.subplots(figsize=(6.5, 3.6))
    for index, (qps, passed) in enumerate(steps, start=1):
        axis.scatter(index, qps, color="tab:green" if passed else "tab:red", marker="o" if passed else "x", zorder=3)
    axis.plot(range(1, len(steps) + 1), [qps for qps, _ in steps], color="grey", linewidth=0.8)
    axis.axhline(capacity_qps, color="tab:green", linestyle="--", linewidth=1, label=f"capacity {capacity_qps:.3g} QPS")
    axis.set_xlabel("search step")
    axis.set_ylabel("request rate (QPS)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def against_load(
    loads: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float | None]]], load_label: str, path: Path
) -> Path:
    """One panel per figure (its title -> {line label -> one value per load}), each against the
    load of a profile's levels: latency percentiles or throughput against rate or concurrency."""
    figure, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    order = np.argsort(loads, kind="stable")
    for axis, (title, lines) in zip(axes[0], panels.items(), strict=True):
        for label, values in lines.items():
            ys = [np.nan if values[i] is None else values[i] for i in order]
            axis.plot([loads[i] for i in order], ys, marker="o", label=label)
        axis.set_xlabel(load_label)
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
