"""A periodic one-line summary of the engine's load, as vLLM logs it: prompt and generation
throughput over the last interval, running and waiting requests, KV-cache use, and the prefix
cache's hit rate (when prefix caching is on). Quiet while the engine is idle."""

import logging
import time

import trio

from engine.frontend.engine_client import EngineClient
from engine.frontend.engine_metrics import EngineMetrics

log = logging.getLogger("engine.stats")


async def log_throughput(engine: EngineClient, metrics: EngineMetrics, interval_s: float) -> None:
    if interval_s <= 0:
        return
    last = (time.monotonic(), metrics.num_prompt_tokens_total, metrics.num_generation_tokens_total)
    load = engine.load
    last_cache = (load.num_prefix_cache_queried_tokens, load.num_prefix_cache_hit_tokens)
    while True:
        await trio.sleep(interval_s)
        now = (time.monotonic(), metrics.num_prompt_tokens_total, metrics.num_generation_tokens_total)
        load = engine.load
        cache = (load.num_prefix_cache_queried_tokens, load.num_prefix_cache_hit_tokens)
        elapsed = now[0] - last[0]
        prompt_rate, generation_rate = (now[1] - last[1]) / elapsed, (now[2] - last[2]) / elapsed
        busy = prompt_rate or generation_rate or load.num_running or load.num_waiting
        if busy:
            queried = cache[0] - last_cache[0]
            hit_rate = f", prefix cache hit rate {100 * (cache[1] - last_cache[1]) / queried:.1f}%" if queried else ""
            log.info(
                "prompt throughput %.1f tokens/s, generation throughput %.1f tokens/s, running %d, waiting %d, "
                "KV cache %.1f%% used%s",
                prompt_rate,
                generation_rate,
                load.num_running,
                load.num_waiting,
                100 * load.num_used_blocks / engine.model.num_kv_blocks,
                hit_rate,
            )
        last, last_cache = now, cache
