"""The engine's Prometheus metrics, in a registry of its own (served at /metrics)."""

import time
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
RATE_WINDOW_S = 10.0


class BatchedHistogram(Collector):
    """A Prometheus histogram fed many observations at once: one vectorised update per engine
    iteration instead of a locked `observe` per token."""

    def __init__(self, name: str, documentation: str, labels: dict[str, str], buckets: Sequence[float]):
        self._name, self._documentation, self._labels = name, documentation, labels
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last is +Inf
        self._sum = 0.0

    def observe_many(self, values: Sequence[float]) -> None:
        if not values:
            return
        array = np.asarray(values, dtype=np.float64)
        self._counts += np.bincount(np.searchsorted(self._bounds, array), minlength=len(self._counts))
        self._sum += float(array.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=list(self._labels))
        cumulative = np.cumsum(self._counts)
        bounds = [f"{b:g}" for b in self._bounds] + ["+Inf"]
        family.add_metric(list(self._labels.values()), list(zip(bounds, cumulative.tolist())), self._sum)
        yield family


class EngineMetrics:
    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        labels = {"model_name": model_name}

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=self.registry, labelnames=list(labels)).labels(**labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=self.registry, labelnames=list(labels)).labels(**labels)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(
                name, doc, registry=self.registry, labelnames=list(labels), buckets=LATENCY_BUCKETS
            ).labels(**labels)

        self.waiting = gauge("engine_requests_waiting", "Requests queued for admission")
        self.running = gauge("engine_requests_running", "Requests holding KV blocks")
        self.kv_usage = gauge("engine_kv_cache_usage_ratio", "Fraction of KV blocks in use")
        self.kv_free = gauge("engine_kv_blocks_free", "KV blocks no running request holds (cached prefixes included)")
        self.kv_total = gauge("engine_kv_blocks_total", "KV blocks in the cache")
        self.tokens_per_s = gauge(
            "engine_generation_tokens_per_second", f"Output tokens per second over the last {RATE_WINDOW_S:g} s"
        )
        self.prompt_tokens = counter("engine_prompt_tokens", "Prompt tokens received")
        self.generation_tokens = counter("engine_generation_tokens", "Output tokens produced")
        self.preemptions = counter("engine_preemptions", "Requests preempted (recomputed later)")
        self.ttft = BatchedHistogram(
            "engine_time_to_first_token_seconds", "Arrival to first output token", labels, LATENCY_BUCKETS
        )
        self.tbt = BatchedHistogram(
            "engine_time_between_tokens_seconds", "Gap between consecutive output tokens", labels, LATENCY_BUCKETS
        )
        self.registry.register(self.ttft)
        self.registry.register(self.tbt)
        self.iteration_s = histogram("engine_iteration_seconds", "Wall time of one engine iteration")
        self.overhead_s = histogram("engine_iteration_overhead_seconds", "Iteration time outside the model workers")
        self._finished = Counter(
            "engine_requests_finished", "Finished requests", registry=self.registry, labelnames=["model_name", "reason"]
        )
        self._model_name = model_name
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_tokens = 0

    def request_received(self, num_prompt_tokens: int) -> None:
        self.prompt_tokens.inc(num_prompt_tokens)

    def tokens(self, ttfts: Sequence[float], tbts: Sequence[float]) -> None:
        """One iteration's first-token latencies and gaps between tokens."""
        self.ttft.observe_many(ttfts)
        self.tbt.observe_many(tbts)

    def request_finished(self, reason: str) -> None:
        self._finished.labels(self._model_name, reason).inc()

    def iteration(self, *, num_output_tokens: int, engine_s: float, worker_s: float, num_preempted: int) -> None:
        self.iteration_s.observe(engine_s + worker_s)
        self.overhead_s.observe(engine_s)
        self.preemptions.inc(num_preempted)
        self.generation_tokens.inc(num_output_tokens)
        now = time.monotonic()
        self._recent.append((now, num_output_tokens))
        self._recent_tokens += num_output_tokens
        while self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent_tokens -= self._recent.popleft()[1]
        self.tokens_per_s.set(self._recent_tokens / RATE_WINDOW_S)

    def set_load(self, *, num_waiting: int, num_running: int, num_used_blocks: int, num_blocks: int) -> None:
        self.waiting.set(num_waiting)
        self.running.set(num_running)
        self.kv_usage.set(num_used_blocks / num_blocks)
        self.kv_free.set(num_blocks - num_used_blocks)
        self.kv_total.set(num_blocks)
