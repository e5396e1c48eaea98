"""The engine actor: owns the scheduler and runs the serving loop.

The loop keeps up to `max_batches_in_flight` steps at the workers. With async scheduling (two
in flight) the next step is scheduled and sent while the current one runs, so the workers go
from one step to the next without waiting for the engine: each iteration the engine receives
the oldest step's sampled tokens, checks EOS and stop tokens (vectorized, `RequestSlots`),
updates the scheduler, hands the tokens to the requests' streams, then schedules and sends the
next step. The workers compute in other processes, so the event loop keeps serving sockets
meanwhile. Text (detokenization, stop strings) is made by each stream's reader, off this loop.
"""

import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import trio

from engine.core.detokenizer import IncrementalDetokenizer
from engine.core.engine_metrics import EngineMetrics, RequestTimes
from engine.core.iteration_log import IterationLog, IterationRecord, batch_columns
from engine.core.request_slots import EngineRequest, RequestSlots
from engine.core.request_stream import EngineFailedError, EngineUnavailableError, RequestOutcome, RequestStream
from engine.core.step_builder import build_step
from engine.core.tokenizer import Tokenizer
from engine.executor.worker_group import WorkerGroup
from engine.scheduler import PRODUCES_TOKEN, Batch, FinishedRequest, Scheduler, SchedulerConfig
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import NewRequest, StepOutput

log = logging.getLogger("engine")


@dataclass(frozen=True, slots=True)
class IterationTiming:
    """One step's figures. `execute_s`: the model runner's own time on rank 0 (forward and
    sampling); `idle_s`: how long rank 0 waited for this step after answering the previous
    one; `host_s`: the engine's own time for the step outside the workers (applying its
    outputs, scheduling and sending the next step)."""

    batch_size: int
    num_tokens: int
    execute_s: float
    idle_s: float
    host_s: float


@dataclass(slots=True)
class _InFlight:
    batch: Batch
    """Requests preempted while this batch ran: the scheduler drops their tokens from it."""
    dropped: set[int] = field(default_factory=set)
    """For the iteration log: when it was scheduled (wall clock), how long scheduling and
    sending took, whether an earlier step was still running when it was sent."""
    scheduled_at: float = 0.0
    schedule_s: float = 0.0
    queued: bool = False


class EngineCore:
    def __init__(
        self,
        config: SchedulerConfig,
        workers: WorkerGroup,
        tokenizer: Tokenizer,
        metrics: EngineMetrics,
        iteration_log: IterationLog | None = None,
    ):
        """`config`: the scheduler's knobs; its number of KV blocks is what the workers allocated.
        `iteration_log`: where to record every iteration (see `engine.core.iteration_log`)."""
        if workers.model is None:
            raise ValueError("the workers must be started before the engine")
        self.model = workers.model
        if config.block_size != self.model.block_size:
            raise ValueError(
                f"the scheduler's block_size {config.block_size} is not the workers' {self.model.block_size}"
            )
        if config.max_model_len > self.model.max_model_len:
            raise ValueError(
                f"max_model_len {config.max_model_len} exceeds the model's maximum of {self.model.max_model_len}"
            )
        self.scheduler = Scheduler(config.with_num_blocks(self.model.num_kv_blocks))
        self.tokenizer = tokenizer
        self.metrics = metrics
        self._workers = workers
        self._requests: dict[int, EngineRequest] = {}
        self._slots = RequestSlots(self.model.eos_token_ids, self.model.vocab_size)
        self._in_flight: deque[_InFlight] = deque()
        # Pipeline stages before the last do not sample: each step forwards them the tokens
        # sampled since the previous step, as (ids, slots, tokens) columns.
        self._forwards_tokens = self.model.pipeline_parallel_size > 1
        self._unforwarded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._ids = itertools.count()
        self._step_ids = itertools.count()
        self._work_available = trio.Event()
        self.failure: str | None = None
        self.failed = trio.Event()
        self.is_draining = False
        self.recent_iterations: deque[IterationTiming] = deque(maxlen=10_000)
        self._iteration_log = iteration_log
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
        self._requests[request_id] = EngineRequest(request_id, prompt, sampling, stream, time.time())
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
        request = self._requests.get(request_id)
        if request is None:
            return  # already finished
        self._finish(self.scheduler.abort(request_id), reason)
        self._work_available.set()

    # ----- the loop -----

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fail_when_workers_fail)
            task_status.started()
            try:
                await self._serve()
            except EngineFailedError as error:
                self._fail_all(str(error))
            except Exception as error:
                log.exception("the engine loop failed")
                self._fail_all(f"internal engine error: {type(error).__name__}: {error}")
            nursery.cancel_scope.cancel()

    async def _serve(self) -> None:
        max_in_flight = self.scheduler.config.max_batches_in_flight
        while True:
            started = time.perf_counter()
            while len(self._in_flight) < max_in_flight and len(self.scheduler):
                if not await self._send_next():
                    break
            if not self._in_flight:
                if self._iteration_log is not None:
                    self._iteration_log.flush()
                await self._work_available.wait()
                self._work_available = trio.Event()
                continue
            host_s = time.perf_counter() - started
            output = await self._workers.receive()
            received = time.perf_counter()
            received_at = time.time()
            oldest = self._in_flight.popleft()
            num_output_tokens = self._apply(oldest, output)
            batch = oldest.batch
            apply_s = time.perf_counter() - received
            host_s += apply_s
            if self._iteration_log is not None:
                self._log_iteration(oldest, output, received_at, received - output.sent_at, apply_s)
            self.recent_iterations.append(
                IterationTiming(len(batch), batch.num_tokens, output.execute_s, output.idle_s, host_s)
            )
            self.metrics.iteration(
                num_tokens=batch.num_tokens,
                num_prefill_tokens=batch.num_prefill_tokens,
                num_output_tokens=num_output_tokens,
                engine_s=host_s,
                worker_s=output.execute_s,
                num_preempted=len(batch.preempted_ids),
            )
            self.publish_load()

    def _log_iteration(
        self, done: _InFlight, output: StepOutput, received_at: float, delivery_s: float, apply_s: float
    ) -> None:
        assert self._iteration_log is not None
        batch = done.batch
        self._iteration_log.append(
            IterationRecord(
                step_id=output.step_id,
                scheduled_at=done.scheduled_at,
                completed_at=received_at,
                **batch_columns(batch),
                preempted_ids=list(batch.preempted_ids),
                queued=done.queued,
                schedule_s=done.schedule_s,
                apply_s=apply_s,
                delivery_s=delivery_s if output.sent_at else 0.0,
                idle_s=output.idle_s,
                prepare_s=output.prepare_s,
                forward_s=output.forward_s,
                execute_s=output.execute_s,
            )
        )

    async def _send_next(self) -> bool:
        """Schedules a batch and sends it; False when nothing could be scheduled."""
        scheduled_at = time.time()
        started = time.perf_counter()
        batch = self.scheduler.schedule(time.monotonic())
        for earlier in self._in_flight:
            earlier.dropped.update(batch.preempted_ids)
        if not len(batch) and not batch.preempted_ids:
            # Nothing can run until something changes (an arrival, an abort, a batch's outputs).
            self.scheduler.update(batch, [])
            return False
        for slot, request_id in zip(batch.new_request_slots, batch.new_request_ids, strict=True):
            self._slots.take(slot, self._requests[request_id])
        await self._workers.send(build_step(next(self._step_ids), batch, self._new_request, self._take_forwarded()))
        queued = bool(self._in_flight)
        self._in_flight.append(_InFlight(batch, set(), scheduled_at, time.perf_counter() - started, queued))
        return True

    def _take_forwarded(self) -> tuple[bytes, bytes, bytes]:
        if not self._unforwarded:
            return b"", b"", b""
        ids, slots, tokens = (np.concatenate(parts) for parts in zip(*self._unforwarded, strict=True))
        self._unforwarded.clear()
        return ids.astype("<u8").tobytes(), slots.astype("<u4").tobytes(), tokens.astype("<u4").tobytes()

    def _new_request(self, request_id: int) -> NewRequest:
        request = self._requests[request_id]
        return NewRequest(request_id, request.prompt_token_ids, request.sampling)

    def _apply(self, done: _InFlight, output: StepOutput) -> int:
        """Hands a step's sampled tokens to their streams and updates the scheduler; returns
        how many tokens were delivered."""
        batch = done.batch
        now = time.time()
        producing = (np.frombuffer(batch.flags, dtype=np.uint8) & PRODUCES_TOKEN) != 0
        slots = np.frombuffer(batch.slots, dtype="<u4")[producing]
        ids = np.frombuffer(batch.ids, dtype="<u8")[producing]
        tokens = np.frombuffer(output.sampled_token_ids, dtype="<u4")
        if self._forwards_tokens:
            self._unforwarded.append((ids, slots, tokens))
        produced = self._slots.produced(slots, ids, tokens, now, done.dropped)
        self.metrics.tokens(produced.ttfts, produced.tbts)
        requests = self._slots.requests
        if output.logprobs:
            for slot, token, position in zip(
                produced.slots.tolist(), produced.tokens.tolist(), produced.positions.tolist(), strict=True
            ):
                requests[slot].stream.push(token, now, output.logprobs[position])
        else:
            for slot, token in zip(produced.slots.tolist(), produced.tokens.tolist(), strict=True):
                requests[slot].stream.push(token, now)
        for prompt in output.prompt_logprobs:
            if (owner := self._requests.get(prompt.request_id)) is not None:
                owner.stream.add_prompt_logprobs(len(owner.prompt_token_ids), prompt.first_position, prompt.tokens)
        for finished in self.scheduler.update(batch, output.sampled_token_ids, finished_ids=produced.stopped_ids):
            self._finish(finished, "stop" if finished.reason == "stop" else "length")
        return len(produced.tokens)

    def _finish(self, finished: FinishedRequest, reason: str) -> None:
        request = self._requests.pop(finished.id, None)
        if request is None:
            return
        now = time.time()
        slot = request.slot
        num_output = int(self._slots.num_output[slot]) if slot is not None else 0
        first_token = float(self._slots.first_token_time[slot]) if slot is not None else np.nan
        last_token = float(self._slots.last_token_time[slot]) if slot is not None else np.nan
        self._slots.release(request)
        first_scheduled = None
        if finished.first_scheduled_at is not None:
            # The scheduler's clock is monotonic; report wall-clock time like every other timestamp.
            first_scheduled = now - (time.monotonic() - finished.first_scheduled_at)
        request.stream.finish(
            RequestOutcome(
                finish_reason=reason,
                text="",  # the stream adds what its detokenizer held back
                num_prompt_tokens=len(request.prompt_token_ids),
                num_output_tokens=num_output,
                arrival_time=request.arrival_time,
                first_scheduled_time=first_scheduled,
                num_preemptions=finished.num_preemptions,
                num_cached_tokens=finished.num_cached_tokens,
            )
        )
        has_token = not np.isnan(first_token)
        times = RequestTimes(
            arrival=request.arrival_time,
            first_scheduled=first_scheduled,
            first_token=first_token if has_token else None,
            finished=last_token if has_token else now,
            num_prompt_tokens=len(request.prompt_token_ids),
            num_output_tokens=num_output,
        )
        self.metrics.request_finished(reason, times)

    def publish_load(self) -> None:
        """Copies queue lengths and KV use into the metrics (also called when they are scraped)."""
        self.metrics.set_load(
            num_waiting=self.scheduler.num_waiting,
            num_running=self.scheduler.num_running,
            num_used_blocks=self.scheduler.num_used_blocks,
            num_blocks=self.model.num_kv_blocks,
        )

    async def _fail_when_workers_fail(self) -> None:
        """Fails every request at once when a worker dies, even while the loop is idle."""
        await self._workers.failed.wait()
        self._fail_all(self._workers.failure or "a model worker died")

    def _fail_all(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("the engine failed: %s; failing %d requests", message, len(self._requests))
        for request_id, request in list(self._requests.items()):
            request.stream.fail(message)
            self.scheduler.abort(request_id)
            self._slots.release(request)
        self._requests.clear()
        self.failed.set()
