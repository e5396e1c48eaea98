"""Captures the padded decode (`engine.worker.padded_decode`) as one CUDA graph per bucket, all
in one memory pool, so a decode step replays one graph instead of launching hundreds of kernels.

The graphs are captured largest first: the pool grows to the largest bucket's needs at once and
the smaller ones reuse its memory (they never run at the same time, and what outlives a replay,
the static buffers, lives outside the pool). Before its capture each bucket runs once eagerly on
the capture stream, so lazy initialisation (cuBLAS handles, workspaces) happens outside it.
"""

import time
from dataclasses import dataclass

import torch

from engine.worker.decode_buckets import DecodeBucket
from engine.worker.padded_decode import PaddedDecode


@dataclass(frozen=True, slots=True)
class CaptureReport:
    num_graphs: int
    seconds: float
    """Device memory the capture took (the pool, and the graphs themselves)."""
    memory_bytes: int


def capture_decode_graphs(padded: PaddedDecode, device: torch.device) -> CaptureReport:
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free_before, _ = torch.cuda.mem_get_info(device)
    started = time.perf_counter()
    pool = torch.cuda.graph_pool_handle()
    stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream(device))
    for bucket in sorted(padded.buckets.all, reverse=True):
        with torch.cuda.stream(stream):
            padded.forward(bucket)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=stream):
            padded.forward(bucket)
        padded.graphs[bucket] = graph
    torch.cuda.current_stream(device).wait_stream(stream)
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    torch.cuda.empty_cache()
    free_after, _ = torch.cuda.mem_get_info(device)
    return CaptureReport(len(padded.graphs), seconds, free_before - free_after)


def padded_decode_peak_bytes(padded: PaddedDecode, device: torch.device) -> int:
    """Device memory a freshly built `padded` takes beyond what was allocated before it: its static
    buffers and the activation peak of the widest bucket of each batch size run eagerly (what the
    graphs' pool will hold). Call it right after building `padded`."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    held = sum(t.numel() * t.element_size() for t in padded.static_buffers())
    before = torch.cuda.memory_allocated(device)
    for batch_size, width in padded.buckets.max_width_of.items():
        padded.forward(DecodeBucket(batch_size, width))
    torch.cuda.synchronize(device)
    return held + torch.cuda.max_memory_allocated(device) - before
