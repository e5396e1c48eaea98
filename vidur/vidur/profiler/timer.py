"""Times a callable on its device: CUDA events on a GPU, the wall clock on the CPU."""

import statistics
import time
from collections.abc import Callable
from typing import Any

STATS = ("min", "max", "mean", "median", "std")


class Timer:
    def __init__(self, device: Any, warmup: int, repeats: int) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.warmup = warmup
        self.repeats = repeats

    def milliseconds(self, run: Callable[[], object]) -> list[float]:
        torch = self.torch
        for _ in range(self.warmup):
            run()
        samples = []
        if self.device.type == "cuda":
            for _ in range(self.repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(float(start.elapsed_time(end)))
        else:
            for _ in range(self.repeats):
                began = time.perf_counter()
                run()
                samples.append((time.perf_counter() - began) * 1e3)
        return samples


def time_stats(operator: str, samples: list[float]) -> dict[str, float]:
    """Vidur's `time_stats.<operator>.<stat>` columns, in milliseconds."""
    return {
        f"time_stats.{operator}.min": min(samples),
        f"time_stats.{operator}.max": max(samples),
        f"time_stats.{operator}.mean": statistics.fmean(samples),
        f"time_stats.{operator}.median": statistics.median(samples),
        f"time_stats.{operator}.std": statistics.pstdev(samples),
    }
