"""Times one step's forward pass (model launch to logits) without adding a synchronization:
on CUDA two events bracket the kernels and are read once the step has synchronized anyway."""

import time

import torch


class ForwardClock:
    def __init__(self, device: torch.device) -> None:
        self._on_cuda = device.type == "cuda"
        self.launched_at = 0.0
        self._stopped_at = 0.0
        self._events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
        self.has_run = False

    def start(self) -> None:
        self.launched_at = time.perf_counter()
        if self._on_cuda:
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()

    def stop(self) -> None:
        self.has_run = True
        if self._events is not None:
            self._events[1].record()
        else:
            self._stopped_at = time.perf_counter()

    def elapsed_s(self) -> float:
        """Seconds from `start` to `stop`; on CUDA, call it after the device has synchronized."""
        if self._events is not None:
            return float(self._events[0].elapsed_time(self._events[1])) / 1e3
        return self._stopped_at - self.launched_at
