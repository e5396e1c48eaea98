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


class _Laps:
    """Times a pass call by call: `lap(name, fn)` runs `fn` and returns its result. The laps tile
    the pass: each runs from the end of the one before (the pass's start for the first) to the
    end of its call, so the glue between calls (views, splits, Python) counts, as it does in the
    model's forward pass, towards the call after it."""

    def __init__(self, torch: Any, on_cuda: bool) -> None:
        self.torch, self.on_cuda = torch, on_cuda
        self.marks: list[tuple[str, Any]] = []
        self.samples: dict[str, list[float]] = {}
        self.last = 0.0

    def start(self) -> None:
        if self.on_cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            start.record()
            self.marks = [("", start)]
        else:
            self.last = time.perf_counter()

    def __call__(self, name: str, run: Callable[[], Any]) -> Any:
        result = run()
        if self.on_cuda:
            end = self.torch.cuda.Event(enable_timing=True)
            end.record()
            self.marks.append((name, end))
        else:
            now = time.perf_counter()
            self.samples.setdefault(name, []).append((now - self.last) * 1e3)
            self.last = now
        return result

    def finish(self) -> None:
        if self.on_cuda:
            self.torch.cuda.synchronize()
            for (_, before), (name, after) in zip(self.marks, self.marks[1:]):
                self.samples.setdefault(name, []).append(float(before.elapsed_time(after)))
            self.marks = []


def laps(timer: "Timer", one_pass: Callable[[Callable[[str, Callable[[], Any]], Any]], None]) -> dict[str, list[float]]:
    """Milliseconds of every named call in `one_pass` (see `_Laps`), over `timer.repeats` passes
    after `timer.warmup` untimed ones."""
    on_cuda = timer.device.type == "cuda"
    for _ in range(timer.warmup):
        one_pass(lambda _, run: run())
    recorder = _Laps(timer.torch, on_cuda)
    for _ in range(timer.repeats):
        recorder.start()
        one_pass(recorder)
        recorder.finish()
    return recorder.samples


def time_stats(operator: str, samples: list[float]) -> dict[str, float]:
    """Vidur's `time_stats.<operator>.<stat>` columns, in milliseconds."""
    return {
        f"time_stats.{operator}.min": min(samples),
        f"time_stats.{operator}.max": max(samples),
        f"time_stats.{operator}.mean": statistics.fmean(samples),
        f"time_stats.{operator}.median": statistics.median(samples),
        f"time_stats.{operator}.std": statistics.pstdev(samples),
    }
