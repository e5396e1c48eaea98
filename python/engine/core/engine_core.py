"""The engine actor: owns the scheduler and runs the serving loop.

Each iteration: schedule a batch, send its deltas to the workers, await the sampled tokens (the
workers compute in other processes, so the event loop keeps serving sockets meanwhile), check
EOS and stop tokens, update the scheduler, and push token ids to each request's stream. Text
(detokenization, stop strings) is made by each stream's reader, off this loop's critical path.
"""

import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from engine.core.detokenizer import IncrementalDetokenizer
from engine.core.engine_metrics import EngineMetrics, RequestTimes
from engine.core.request_stream import EngineFailedError, EngineUnavailableError, RequestOutcome, RequestStream
from engine.wire.sampling_params import SamplingParams
from engine.scheduler import Batch, FinishedRequest, ScheduledRequest, Scheduler, SchedulerConfig
from engine.wire.step import NewRequest, ScheduledChunk, StepInput, StepOutput
from engine.core.tokenizer import Tokenizer
from engine.executor.worker_group import WorkerGroup

log = logging.getLogger("engine")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduler knobs; the KV block count and model length come from the workers."""

    policy: str = "sarathi"
    chunk_size: int | None = None
    max_num_seqs: int = 128
    max_model_len: int | None = None
    block_size: int = 16
    watermark: float = 0.01
    enable_prefix_caching: bool = False

    def scheduler_config(self, num_blocks: int, model_max_len: int) -> SchedulerConfig:
        max_model_len = model_max_len if self.max_model_len is None else self.max_model_len
        if max_model_len > model_max_len:
            raise ValueError(f"max_model_len {max_model_len} exceeds the model's maximum of {model_max_len}")
        return SchedulerConfig(
            policy=self.policy,
            token_budget=self.chunk_size,
            max_num_seqs=self.max_num_seqs,
            max_model_len=max_model_len,
            block_size=self.block_size,
            num_blocks=num_blocks,
            watermark=self.watermark,
            enable_prefix_caching=self.enable_prefix_caching,
        )


@dataclass(frozen=True, slots=True)
class IterationTiming:
    """Where one iteration's time went. `execute_s` is the model runner's own time on rank 0
    (forward and sampling); the rest of `total_s` is engine overhead: scheduling, building the
    step, inter-process messaging, applying outputs and streaming."""

    batch_size: int
    num_tokens: int
    total_s: float
    execute_s: float

    @property
    def overhead_s(self) -> float:
        return self.total_s - self.execute_s


@dataclass(slots=True)
class _Request:
    prompt_token_ids: list[int]
    sampling: SamplingParams
    stream: RequestStream
    arrival_time: float
    output_token_ids: list[int] = field(default_factory=list)
    known_to_workers: bool = False
    first_token_time: float | None = None
    last_token_time: float = 0.0


class EngineCore:
    def __init__(self, config: EngineConfig, workers: WorkerGroup, tokenizer: Tokenizer, metrics: EngineMetrics):
        if workers.model is None:
            raise ValueError("the workers must be started before the engine")
        self.model = workers.model
        self.scheduler = Scheduler(config.scheduler_config(self.model.num_kv_blocks, self.model.max_model_len))
        self.tokenizer = tokenizer
        self.metrics = metrics
        self._workers = workers
        self._requests: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._step_ids = itertools.count()
        self._forget_on_workers: list[int] = []
        self._work_available = trio.Event()
        self.failure: str | None = None
        self.failed = trio.Event()
        self.is_draining = False
        self.recent_iterations: deque[IterationTiming] = deque(maxlen=10_000)
        metrics.read_counters.add(
            ["engine_prefix_cache_queries", "vllm:prefix_cache_queries"],
            "Prompt tokens looked up in the prefix cache",
            lambda: self.scheduler.num_prefix_cache_queried_tokens,
        )
        metrics.read_counters.add(
            ["engine_prefix_cache_hits", "vllm:prefix_cache_hits"],
            "Prompt tokens found in the prefix cache",
            lambda: self.scheduler.num_prefix_cache_hit_tokens,
        )

    @property
    def max_model_len(self) -> int:
        return self.scheduler.config.max_model_len

    @property
    def num_requests(self) -> int:
        return len(self._requests)

    def start_draining(self) -> None:
        """Refuses new requests from now on; the ones already submitted go on."""
        self.is_draining = True

    def check(self, prompt_token_ids: Sequence[int], sampling: SamplingParams) -> None:
        """Raises what `submit` would raise for this request, without submitting it."""
        if self.failure is not None:
            raise EngineFailedError(self.failure)
        if self.is_draining:
            raise EngineUnavailableError("the server is shutting down and accepts no new requests")
        sampling.validate(self.model.vocab_size)
        if not prompt_token_ids:
            raise ValueError("the prompt is empty")
        vocab_size = self.model.vocab_size
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= vocab_size:
            bad = next(t for t in prompt_token_ids if not 0 <= t < vocab_size)
            raise ValueError(f"prompt token id {bad} is outside the vocabulary (size {vocab_size})")
        if len(prompt_token_ids) + sampling.max_tokens > self.max_model_len:
            raise ValueError(
                f"this model's maximum context length is {self.max_model_len} tokens, but {len(prompt_token_ids)}"
                f" prompt tokens plus max_tokens {sampling.max_tokens} were requested"
            )

    def submit(self, prompt_token_ids: Sequence[int], sampling: SamplingParams) -> tuple[int, RequestStream]:
        """Queues a request. Raises ValueError naming what is wrong with it, EngineFailedError
        once the engine failed, EngineUnavailableError while it drains."""
        self.check(prompt_token_ids, sampling)
        prompt = list(prompt_token_ids)
        request_id = next(self._ids)
        arrival = time.monotonic()
        # Prompt logprobs need every prompt position computed, so such a prompt skips the cache.
        if self.scheduler.config.enable_prefix_caching and sampling.prompt_logprobs is None:
            self.scheduler.add_request(
                request_id, prompt_token_ids=prompt, max_new_tokens=sampling.max_tokens, arrival_time=arrival
            )
        else:
            self.scheduler.add_request(
                request_id, prompt_len=len(prompt), max_new_tokens=sampling.max_tokens, arrival_time=arrival
            )
        detokenizer = IncrementalDetokenizer(
            self.tokenizer,
            prompt,
            sampling.stop,
            min_tokens=sampling.min_tokens,
            skip_special_tokens=sampling.skip_special_tokens,
        )
        stream = RequestStream(detokenizer, on_stop=partial(self.stop, request_id))
        self._requests[request_id] = _Request(prompt, sampling, stream, time.time())
        self.metrics.request_received(len(prompt))
        self._work_available.set()
        return request_id, stream

    def abort(self, request_id: int) -> None:
        """Ends a request whose client went away; its KV blocks return to the pool at once."""
        self._end_early(request_id, "abort")

    def stop(self, request_id: int) -> None:
        """Ends a request whose reader found a stop string in its text."""
        self._end_early(request_id, "stop")

    def _end_early(self, request_id: int, reason: str) -> None:
        request = self._requests.pop(request_id, None)
        if request is None:
            return  # already finished
        finished = self.scheduler.abort(request_id)
        if request.known_to_workers:
            self._forget_on_workers.append(request_id)
        self._finish(request, reason, finished)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fail_when_workers_fail)
            task_status.started()
            try:
                while True:
                    if not len(self.scheduler):
                        await self._work_available.wait()
                        self._work_available = trio.Event()
                        continue
                    await self._iterate()
            except EngineFailedError as error:
                self._fail_all(str(error))
            except Exception as error:
                log.exception("the engine loop failed")
                self._fail_all(f"internal engine error: {type(error).__name__}: {error}")
            nursery.cancel_scope.cancel()

    async def _fail_when_workers_fail(self) -> None:
        """Fails every request at once when a worker dies, even while the loop is idle."""
        await self._workers.failed.wait()
        self._fail_all(self._workers.failure or "a model worker died")

    async def _iterate(self) -> None:
        started = time.perf_counter()
        batch = self.scheduler.schedule(time.monotonic())
        scheduled = batch.requests
        if not scheduled:
            # Nothing can run until something changes (an abort or a new arrival).
            self.scheduler.update(batch, [])
            await self._work_available.wait()
            self._work_available = trio.Event()
            return
        step = self._step_input(batch, scheduled)
        prepared = time.perf_counter()
        output = await self._workers.execute(step)
        executed = time.perf_counter()
        num_output_tokens = self._apply(batch, scheduled, output)
        finished = time.perf_counter()
        self.recent_iterations.append(
            IterationTiming(len(scheduled), batch.num_tokens, finished - started, output.execute_s)
        )
        self.metrics.iteration(
            num_tokens=batch.num_tokens,
            num_prefill_tokens=batch.num_prefill_tokens,
            num_output_tokens=num_output_tokens,
            engine_s=(prepared - started) + (finished - executed),
            worker_s=executed - prepared,
            num_preempted=len(batch.preempted_ids),
        )
        self.publish_load()

    def publish_load(self) -> None:
        """Copies queue lengths and KV use into the metrics (also called when they are scraped)."""
        self.metrics.set_load(
            num_waiting=self.scheduler.num_waiting,
            num_running=self.scheduler.num_running,
            num_used_blocks=self.scheduler.num_used_blocks,
            num_blocks=self.model.num_kv_blocks,
        )

    def _step_input(self, batch: Batch, scheduled: list[ScheduledRequest]) -> StepInput:
        new_requests = []
        chunks = []
        for entry in scheduled:
            request = self._requests[entry.id]
            if not request.known_to_workers:
                request.known_to_workers = True
                new_requests.append(NewRequest(entry.id, request.prompt_token_ids, request.sampling))
            chunks.append(
                ScheduledChunk(
                    entry.id, entry.num_tokens, entry.num_computed_tokens, entry.produces_token, entry.new_block_ids
                )
            )
        forget, self._forget_on_workers = self._forget_on_workers, []
        return StepInput(next(self._step_ids), chunks, new_requests, batch.preempted_ids, forget)

    def _apply(self, batch: Batch, scheduled: list[ScheduledRequest], output: StepOutput) -> int:
        """Streams the sampled tokens, finishes requests; returns how many tokens were produced."""
        now = time.time()
        tokens = output.sampled_token_ids
        logprobs = output.logprobs or itertools.repeat(None)
        stopped = []
        num_output_tokens = 0
        ttfts: list[float] = []
        tbts: list[float] = []
        eos_token_ids = self.model.eos_token_ids
        for prompt in output.prompt_logprobs:
            if (owner := self._requests.get(prompt.request_id)) is not None:
                owner.stream.add_prompt_logprobs(len(owner.prompt_token_ids), prompt.first_position, prompt.tokens)
        producing = (entry for entry in scheduled if entry.produces_token)
        for entry, token, token_logprobs in zip(producing, tokens, logprobs, strict=False):
            request = self._requests.get(entry.id)
            if request is None:
                continue  # aborted while its step ran
            request.output_token_ids.append(token)
            request.stream.push(token, now, token_logprobs)
            if len(request.output_token_ids) == 1:
                request.first_token_time = now
                ttfts.append(now - request.arrival_time)
            else:
                tbts.append(now - request.last_token_time)
            request.last_token_time = now
            sampling = request.sampling
            may_stop = len(request.output_token_ids) >= sampling.min_tokens
            if may_stop and ((not sampling.ignore_eos and token in eos_token_ids) or token in sampling.stop_token_ids):
                stopped.append(entry.id)
            num_output_tokens += 1
        self.metrics.tokens(ttfts, tbts)
        for finished in self.scheduler.update(batch, tokens, finished_ids=stopped):
            request = self._requests.pop(finished.id)
            self._forget_on_workers.append(finished.id)
            self._finish(request, "stop" if finished.reason == "stop" else "length", finished)
        return num_output_tokens

    def _finish(self, request: _Request, reason: str, finished: FinishedRequest) -> None:
        now = time.time()
        first_scheduled = None
        if finished.first_scheduled_at is not None:
            # The scheduler's clock is monotonic; report wall-clock time like every other timestamp.
            first_scheduled = now - (time.monotonic() - finished.first_scheduled_at)
        outcome = RequestOutcome(
            finish_reason=reason,
            text="",  # the stream adds what its detokenizer held back
            num_prompt_tokens=len(request.prompt_token_ids),
            num_output_tokens=len(request.output_token_ids),
            arrival_time=request.arrival_time,
            first_scheduled_time=first_scheduled,
            num_preemptions=finished.num_preemptions,
            num_cached_tokens=finished.num_cached_tokens,
        )
        request.stream.finish(outcome)
        times = RequestTimes(
            arrival=request.arrival_time,
            first_scheduled=first_scheduled,
            first_token=request.first_token_time,
            finished=request.last_token_time if request.first_token_time is not None else now,
            num_prompt_tokens=len(request.prompt_token_ids),
            num_output_tokens=len(request.output_token_ids),
        )
        self.metrics.request_finished(reason, times)

    def _fail_all(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("the engine failed: %s; failing %d requests", message, len(self._requests))
        for request_id, request in list(self._requests.items()):
            request.stream.fail(message)
            self.scheduler.abort(request_id)
        self._requests.clear()
        self.failed.set()
