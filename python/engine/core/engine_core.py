"""The engine core: owns the scheduler and runs the serving loop, in a process of its own
(`engine.core.core_process`), apart from the servers and the requests' streams.

The loop keeps up to `max_batches_in_flight` steps at the workers. With async scheduling (two
in flight) the next step is scheduled and sent while the current one runs, so the workers go
from one step to the next without waiting for the core: each iteration the core receives the
oldest step's sampled tokens, checks EOS and stop tokens and updates the scheduler (one call
into Rust, `TokenLedger.apply`), posts one `CoreOutputs` to the front-end (the tokens as two
columns, the requests that finished, the step's figures), then schedules and sends the next
step. No Python object is made per token here; the front-end fans the tokens out to the streams
and makes the text.
"""

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import trio

from engine.core.core_outputs import OutputsBuilder
from engine.core.iteration_log import IterationLog, IterationRecord, batch_columns
from engine.core.engine_request import EngineRequest
from engine.core.step_builder import build_step
from engine.errors import EngineFailedError
from engine.executor.worker_group import WorkerGroup
from engine.scheduler import (
    PRODUCES_TOKEN,
    Batch,
    FinishedRequest,
    Scheduler,
    SchedulerConfig,
    SchedulerError,
    TokenLedger,
)
from engine.wire.core_messages import AddRequest, CoreFailed, IterationStats, SchedulerLoad
from engine.wire.message_link import LinkClosedError, MessageLink
from engine.wire.step import NewRequest, StepOutput

log = logging.getLogger("engine")


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
        front_end: MessageLink,
        iteration_log: IterationLog | None = None,
    ):
        """`config`: the scheduler's knobs; its number of KV blocks is what the workers allocated.
        `front_end`: where outputs go. `iteration_log`: where to record every iteration (see
        `engine.core.iteration_log`)."""
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
        self._workers = workers
        self._front_end = front_end
        self._requests: dict[int, EngineRequest] = {}
        self._ledger = TokenLedger(list(self.model.eos_token_ids), self.model.vocab_size)
        self._in_flight: deque[_InFlight] = deque()
        self._outputs = OutputsBuilder()
        # The step whose outputs were applied last, and the host time it took so far.
        self._applied: tuple[IterationStats, float] | None = None
        # Pipeline stages before the last do not sample: each step forwards them the tokens
        # sampled since the previous step, as (ids, slots, tokens) columns.
        self._forwards_tokens = self.model.pipeline_parallel_size > 1
        self._unforwarded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._step_ids = itertools.count()
        self._work_available = trio.Event()
        self.failure: str | None = None
        self._iteration_log = iteration_log

    def add(self, request: AddRequest) -> None:
        """Queues a request the front-end checked; one the scheduler still refuses is reported
        back as rejected."""
        if self.failure is not None:
            return  # the front-end fails it when the failure reaches it
        prompt = request.prompt_token_ids
        sampling = request.sampling
        try:
            # Prompt logprobs need every prompt position computed, so such a prompt skips the cache.
            if self.scheduler.config.enable_prefix_caching and sampling.prompt_logprobs is None:
                self.scheduler.add_request(
                    request.request_id,
                    prompt_token_ids=prompt,
                    max_new_tokens=sampling.max_tokens,
                    arrival_time=request.arrival_monotonic,
                )
            else:
                self.scheduler.add_request(
                    request.request_id,
                    prompt_len=len(prompt),
                    max_new_tokens=sampling.max_tokens,
                    arrival_time=request.arrival_monotonic,
                )
        except SchedulerError as error:
            log.error("the scheduler refused request %d: %s", request.request_id, error)
            self._outputs.rejected(request.request_id, str(error))
            self._post()
            return
        self._requests[request.request_id] = EngineRequest(request.request_id, prompt, sampling, request.arrival_time)
        self._work_available.set()

    def end(self, request_id: int, reason: str) -> None:
        """Ends a request early ("abort": its client went away; "stop": a stop string in its
        text); its KV blocks return to the pool at once."""
        if request_id not in self._requests:
            return  # already finished
        self._finish(self.scheduler.abort(request_id), reason)
        self._work_available.set()

    def post_outputs(self) -> None:
        """Sends what changed outside a step (requests ended early), if anything did."""
        if self._outputs.has_news:
            self._post()

    # ----- the loop -----

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fail_when_workers_fail)
            task_status.started()
            try:
                await self._serve()
            except EngineFailedError as error:
                self._fail_all(str(error))
            except LinkClosedError:
                log.info("the front-end went away; the engine core stops")
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
            if self._applied is not None:
                # The step applied last is complete now that the next one is on its way.
                stats, host_s = self._applied
                stats.host_s = host_s + time.perf_counter() - started
                self._outputs.iteration(stats)
                self._applied = None
            if not self._in_flight:
                self.post_outputs()
                if self._iteration_log is not None:
                    self._iteration_log.flush()
                await self._work_available.wait()
                self._work_available = trio.Event()
                continue
            output = await self._workers.receive()
            received = time.perf_counter()
            received_at = time.time()
            oldest = self._in_flight.popleft()
            num_output_tokens = self._apply(oldest, output)
            apply_s = time.perf_counter() - received
            if self._iteration_log is not None:
                self._log_iteration(oldest, output, received_at, received - output.sent_at, apply_s)
            batch = oldest.batch
            stats = IterationStats(
                batch_size=len(batch),
                num_tokens=batch.num_tokens,
                num_prefill_tokens=batch.num_prefill_tokens,
                num_output_tokens=num_output_tokens,
                num_preempted=len(batch.preempted_ids),
                execute_s=output.execute_s,
                idle_s=output.idle_s,
                host_s=0.0,
            )
            self._post()
            self._applied = (stats, time.perf_counter() - received)

    def _post(self) -> None:
        # `Scheduler.load()` answers in `SchedulerLoad`'s field order.
        self._front_end.post(self._outputs.take(SchedulerLoad(*self.scheduler.load())))

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
        if not len(batch) and not batch.preempted_ids:
            # Nothing can run until something changes (an arrival, an abort, a batch's outputs).
            self.scheduler.update(batch, [])
            return False
        step = build_step(next(self._step_ids), batch, self._new_request, self._take_forwarded())
        if step.preempted_ids:
            for earlier in self._in_flight:
                earlier.dropped.update(step.preempted_ids)
        if step.new_requests:
            for slot, new in zip(batch.new_request_slots, step.new_requests, strict=True):
                self._take_slot(slot, self._requests[new.request_id])
        await self._workers.send(step)
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

    def _take_slot(self, slot: int, request: EngineRequest) -> None:
        """`request` holds `slot` from now on (its first batch, or its first after a preemption)."""
        if request.slot is not None:
            self._ledger.release(request.slot, request.request_id)
        request.slot = slot
        sampling = request.sampling
        self._ledger.take(
            slot,
            request.request_id,
            request.arrival_time,
            min_tokens=sampling.min_tokens,
            ignore_eos=sampling.ignore_eos,
            stop_token_ids=sampling.stop_token_ids,
        )

    def _apply(self, done: _InFlight, output: StepOutput) -> int:
        """Records a step's sampled tokens for the front-end and updates the scheduler (one call
        into Rust does both); returns how many tokens were delivered."""
        batch = done.batch
        now = time.time()
        if self._forwards_tokens:
            self._unforwarded.append(self._producing_columns(batch, output.sampled_token_ids))
        recorded = self._ledger.apply(self.scheduler, batch, output.sampled_token_ids, now, done.dropped)
        logprobs = []
        if output.logprobs:
            logprobs = [output.logprobs[p] for p in np.frombuffer(recorded.positions, dtype="<u4").tolist()]
        live_prompt_logprobs = [p for p in output.prompt_logprobs if p.request_id in self._requests]
        self._outputs.tokens(now, recorded, logprobs, live_prompt_logprobs)
        for finished in recorded.finished:
            self._finish(finished, "stop" if finished.reason == "stop" else "length")
        return recorded.num_tokens

    @staticmethod
    def _producing_columns(batch: Batch, sampled_token_ids: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, slots, tokens) of the batch's entries that sampled a token."""
        ids = np.frombuffer(batch.ids, dtype="<u8")
        slots = np.frombuffer(batch.slots, dtype="<u4")
        if batch.num_producing < len(batch):
            producing = (np.frombuffer(batch.flags, dtype=np.uint8) & PRODUCES_TOKEN) != 0
            ids, slots = ids[producing], slots[producing]
        return ids, slots, np.frombuffer(sampled_token_ids, dtype="<u4")

    def _finish(self, finished: FinishedRequest, reason: str) -> None:
        request = self._requests.pop(finished.id, None)
        if request is None:
            return
        now = time.time()
        num_output, first_token, last_token = 0, np.nan, np.nan
        if request.slot is not None:
            times = self._ledger.token_times(request.slot, request.request_id)
            if times is not None:
                num_output, first_token, last_token = times
            self._release_slot(request)
        first_scheduled = np.nan
        if finished.first_scheduled_at is not None:
            # The scheduler's clock is monotonic; report wall-clock time like every other timestamp.
            first_scheduled = now - (time.monotonic() - finished.first_scheduled_at)
        self._outputs.finished(
            finished.id,
            reason,
            num_output_tokens=num_output,
            first_scheduled_time=first_scheduled,
            first_token_time=first_token,
            last_token_time=last_token,
            finished_time=now,
            num_preemptions=finished.num_preemptions,
            num_cached_tokens=finished.num_cached_tokens,
        )

    def _release_slot(self, request: EngineRequest) -> None:
        if request.slot is not None:
            self._ledger.release(request.slot, request.request_id)
            request.slot = None

    async def _fail_when_workers_fail(self) -> None:
        """Fails every request at once when a worker dies, even while the loop is idle."""
        await self._workers.failed.wait()
        self._fail_all(self._workers.failure or "a model worker died")

    def _fail_all(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("the engine failed: %s; failing %d requests", message, len(self._requests))
        for request_id, request in list(self._requests.items()):
            self.scheduler.abort(request_id)
            self._release_slot(request)
        self._requests.clear()
        try:
            self._front_end.post(CoreFailed(message))
        except LinkClosedError:
            pass
