"""The engine's Prometheus metrics, in a registry of its own (served at /metrics).

Every figure is exported under the engine's own name (`engine_*`) and, where vLLM has one,
under vLLM's name too (`vllm:*`, same label `model_name`), so existing vLLM dashboards work.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
TOKEN_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
RATE_WINDOW_S = 10.0
FINISH_REASONS = ("stop", "length", "abort")


class BatchedHistogram(Collector):
    """A Prometheus histogram fed many observations at once (one vectorised update per engine
    iteration instead of a locked `observe` per token), exported under each of `names`."""

    def __init__(self, names: Sequence[str], documentation: str, labels: dict[str, str], buckets: Sequence[float]):
        self._names, self._documentation, self._labels = tuple(names), documentation, labels
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last is +Inf
        self._sum = 0.0

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        if not len(values):
            return
        array = np.asarray(values, dtype=np.float64)
        self._counts += np.bincount(np.searchsorted(self._bounds, array), minlength=len(self._counts))
        self._sum += float(array.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative = np.cumsum(self._counts).tolist()
        bounds = [f"{b:g}" for b in self._bounds] + ["+Inf"]
        for name in self._names:
            family = HistogramMetricFamily(name, self._documentation, labels=list(self._labels))
            family.add_metric(list(self._labels.values()), list(zip(bounds, cumulative)), self._sum)
            yield family


class ReadCounters(Collector):
    """Counters whose totals live elsewhere (the scheduler), read when /metrics is scraped."""

    def __init__(self, labels: dict[str, str]):
        self._labels = labels
        self._counters: list[tuple[tuple[str, ...], str, Callable[[], float]]] = []

    def add(self, names: Sequence[str], documentation: str, read: Callable[[], float]) -> None:
        self._counters.append((tuple(names), documentation, read))

    def collect(self) -> Iterator[Metric]:
        for names, documentation, read in self._counters:
            value = read()
            for name in names:
                family = CounterMetricFamily(name, documentation, labels=list(self._labels))
                family.add_metric(list(self._labels.values()), value)
                yield family


@dataclass(frozen=True, slots=True)
class RequestTimes:
    """A finished request's timeline (wall-clock seconds) and sizes, for the per-request histograms."""

    arrival: float
    first_scheduled: float | None
    first_token: float | None
    finished: float
    num_prompt_tokens: int
    num_output_tokens: int


class EngineMetrics:
    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        labels = {"model_name": model_name}
        self._labels = labels

        def gauges(names: Sequence[str], doc: str) -> list[Gauge]:
            return [Gauge(n, doc, registry=self.registry, labelnames=list(labels)).labels(**labels) for n in names]

        def counters(names: Sequence[str], doc: str) -> list[Counter]:
            return [Counter(n, doc, registry=self.registry, labelnames=list(labels)).labels(**labels) for n in names]

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(
                name, doc, registry=self.registry, labelnames=list(labels), buckets=LATENCY_BUCKETS
            ).labels(**labels)

        def batched(names: Sequence[str], doc: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> BatchedHistogram:
            collector = BatchedHistogram(names, doc, labels, buckets)
            self.registry.register(collector)
            return collector

        self.waiting = gauges(["engine_requests_waiting", "vllm:num_requests_waiting"], "Requests queued for admission")
        self.running = gauges(["engine_requests_running", "vllm:num_requests_running"], "Requests holding KV blocks")
        self.kv_usage = gauges(
            ["engine_kv_cache_usage_ratio", "vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"],
            "Fraction of KV blocks in use (1 = full)",
        )
        self.kv_free = gauges(["engine_kv_blocks_free"], "KV blocks no running request holds (cached prefixes included)")
        self.kv_total = gauges(["engine_kv_blocks_total"], "KV blocks in the cache")
        self.tokens_per_s = gauges(
            ["engine_generation_tokens_per_second"], f"Output tokens per second over the last {RATE_WINDOW_S:g} s"
        )
        self.prompt_tokens = counters(["engine_prompt_tokens", "vllm:prompt_tokens"], "Prompt tokens received")
        self.generation_tokens = counters(
            ["engine_generation_tokens", "vllm:generation_tokens"], "Output tokens produced"
        )
        self.prefill_tokens_computed = counters(
            ["engine_prefill_tokens_computed"],
            "Prompt tokens the model ran (prefill chunks; cached prefixes skip it, recomputations repeat it)",
        )
        self.preemptions = counters(
            ["engine_preemptions", "vllm:num_preemptions"], "Requests preempted (recomputed later)"
        )
        self.ttft = batched(
            ["engine_time_to_first_token_seconds", "vllm:time_to_first_token_seconds"], "Arrival to first output token"
        )
        self.tbt = batched(
            ["engine_time_between_tokens_seconds", "vllm:inter_token_latency_seconds",
             "vllm:time_per_output_token_seconds"],
            "Gap between consecutive output tokens",
        )
        self.e2e = batched(
            ["engine_e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds"],
            "Arrival to the last output token", REQUEST_LATENCY_BUCKETS,
        )
        self.queue_time = batched(
            ["engine_request_queue_time_seconds", "vllm:request_queue_time_seconds"],
            "Arrival to first scheduled", REQUEST_LATENCY_BUCKETS,
        )
        self.prefill_time = batched(
            ["engine_request_prefill_time_seconds", "vllm:request_prefill_time_seconds"],
            "First scheduled to first output token", REQUEST_LATENCY_BUCKETS,
        )
        self.decode_time = batched(
            ["engine_request_decode_time_seconds", "vllm:request_decode_time_seconds"],
            "First to last output token", REQUEST_LATENCY_BUCKETS,
        )
        self.inference_time = batched(
            ["engine_request_inference_time_seconds", "vllm:request_inference_time_seconds"],
            "First scheduled to the last output token", REQUEST_LATENCY_BUCKETS,
        )
        self.request_prompt_tokens = batched(
            ["engine_request_prompt_tokens", "vllm:request_prompt_tokens"], "Prompt tokens per request",
            TOKEN_COUNT_BUCKETS,
        )
        self.request_generation_tokens = batched(
            ["engine_request_generation_tokens", "vllm:request_generation_tokens"], "Output tokens per request",
            TOKEN_COUNT_BUCKETS,
        )
        self.iteration_tokens = batched(
            ["engine_iteration_tokens", "vllm:iteration_tokens_total"], "Tokens per engine iteration",
            TOKEN_COUNT_BUCKETS,
        )
        self.iteration_s = histogram("engine_iteration_seconds", "Wall time of one engine iteration")
        self.overhead_s = histogram("engine_iteration_overhead_seconds", "Iteration time outside the model workers")
        self._finished = [
            Counter(name, "Finished requests", registry=self.registry, labelnames=["model_name", label])
            for name, label in (("engine_requests_finished", "reason"), ("vllm:request_success", "finished_reason"))
        ]
        for counter in self._finished:
            for reason in FINISH_REASONS:
                counter.labels(model_name, reason)  # every series exists (at 0) from the start
        self.read_counters = ReadCounters(labels)
        self.registry.register(self.read_counters)
        self._model_name = model_name
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_tokens = 0
        self.num_prompt_tokens_total = 0
        self.num_generation_tokens_total = 0

    def request_received(self, num_prompt_tokens: int) -> None:
        self.num_prompt_tokens_total += num_prompt_tokens
        for counter in self.prompt_tokens:
            counter.inc(num_prompt_tokens)

    def tokens(self, ttfts: Sequence[float] | np.ndarray, tbts: Sequence[float] | np.ndarray) -> None:
        """One iteration's first-token latencies and gaps between tokens."""
        self.ttft.observe_many(ttfts)
        self.tbt.observe_many(tbts)

    def request_finished(self, reason: str, times: RequestTimes) -> None:
        self._finished[0].labels(self._model_name, reason).inc()
        self._finished[1].labels(self._model_name, reason).inc()
        self.request_prompt_tokens.observe_many([times.num_prompt_tokens])
        self.request_generation_tokens.observe_many([times.num_output_tokens])
        if times.first_scheduled is not None:
            self.queue_time.observe_many([times.first_scheduled - times.arrival])
            if times.first_token is not None:
                self.prefill_time.observe_many([times.first_token - times.first_scheduled])
                self.inference_time.observe_many([times.finished - times.first_scheduled])
        if times.first_token is not None:
            self.e2e.observe_many([times.finished - times.arrival])
            self.decode_time.observe_many([times.finished - times.first_token])

    def iteration(
        self,
        *,
        num_tokens: int,
        num_prefill_tokens: int,
        num_output_tokens: int,
        engine_s: float,
        worker_s: float,
        num_preempted: int,
    ) -> None:
        self.iteration_s.observe(engine_s + worker_s)
        self.overhead_s.observe(engine_s)
        self.iteration_tokens.observe_many([num_tokens])
        for counter in self.prefill_tokens_computed:
            counter.inc(num_prefill_tokens)
        for counter in self.preemptions:
            counter.inc(num_preempted)
        self.num_generation_tokens_total += num_output_tokens
        for counter in self.generation_tokens:
            counter.inc(num_output_tokens)
        now = time.monotonic()
        self._recent.append((now, num_output_tokens))
        self._recent_tokens += num_output_tokens
        while self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent_tokens -= self._recent.popleft()[1]
        for gauge in self.tokens_per_s:
            gauge.set(self._recent_tokens / RATE_WINDOW_S)

    def set_load(self, *, num_waiting: int, num_running: int, num_used_blocks: int, num_blocks: int) -> None:
        for gauge in self.waiting:
            gauge.set(num_waiting)
        for gauge in self.running:
            gauge.set(num_running)
        for gauge in self.kv_usage:
            gauge.set(num_used_blocks / num_blocks)
        for gauge in self.kv_free:
            gauge.set(num_blocks - num_used_blocks)
        for gauge in self.kv_total:
            gauge.set(num_blocks)
