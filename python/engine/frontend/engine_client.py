"""The front-end's handle on the engine core: starts the core process, checks and submits
requests, and fans each step's tokens out to the requests' streams.

The servers use it as they would the engine itself (`check`, `submit`, `abort`, `stop`, the
model's limits, `failure`). The core answers with one `CoreOutputs` per step; here each token
becomes a push onto its request's stream, the metrics are updated, and finished requests get
their outcome. When the core process dies or reports a failure, every request fails at once.
"""

import contextlib
import itertools
import logging
import multiprocessing
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import trio

from engine.core.core_process import CoreSpec, run_engine_core
from engine.errors import EngineFailedError, EngineUnavailableError
from engine.frontend.detokenizer import IncrementalDetokenizer
from engine.frontend.engine_metrics import EngineMetrics, RequestTimes
from engine.frontend.request_stream import RequestOutcome, RequestStream
from engine.frontend.tokenizer import Tokenizer
from engine.scheduler import SchedulerConfig
from engine.wire.core_messages import (
    AddRequest,
    CoreFailed,
    CoreOutputs,
    CoreReady,
    EndRequest,
    IterationStats,
    SchedulerLoad,
    StopCore,
    core_decoder,
)
from engine.wire.framing import FrameError
from engine.wire.message_link import LinkClosedError, MessageLink
from engine.wire.sampling_params import SamplingParams

log = logging.getLogger("engine")

STOP_GRACE_S = 15.0
EXIT_GRACE_S = 0.2


@dataclass(slots=True)
class _Live:
    stream: RequestStream
    num_prompt_tokens: int
    arrival_time: float


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else value


class EngineClient:
    def __init__(
        self,
        spec: CoreSpec,
        scheduler: SchedulerConfig,
        tokenizer: Tokenizer,
        metrics: EngineMetrics,
    ):
        """`spec`: what the core process starts with (its scheduler fields are `scheduler`'s)."""
        self._spec = spec
        self._scheduler = scheduler
        self.tokenizer = tokenizer
        self.metrics = metrics
        self._live: dict[int, _Live] = {}
        self._ids = itertools.count()
        self._link: MessageLink | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._model: CoreReady | None = None
        self.load = SchedulerLoad(0, 0, 0, 0, 0)
        self.failure: str | None = None
        self.failed = trio.Event()
        self.is_draining = False
        self.recent_iterations: deque[IterationStats] = deque(maxlen=10_000)
        """(tokens, seconds) of each recent `CoreOutputs` handed to the streams."""
        self.recent_deliveries: deque[tuple[int, float]] = deque(maxlen=10_000)
        metrics.read_counters.add(
            ["engine_prefix_cache_queries", "vllm:prefix_cache_queries"],
            "Prompt tokens looked up in the prefix cache",
            lambda: self.load.num_prefix_cache_queried_tokens,
        )
        metrics.read_counters.add(
            ["engine_prefix_cache_hits", "vllm:prefix_cache_hits"],
            "Prompt tokens found in the prefix cache",
            lambda: self.load.num_prefix_cache_hit_tokens,
        )

    @property
    def model(self) -> CoreReady:
        """What the core reported once its workers were ready."""
        if self._model is None:
            raise RuntimeError("the engine core is not started")
        return self._model

    @property
    def config(self) -> SchedulerConfig:
        return self._scheduler

    @property
    def max_model_len(self) -> int:
        return self._scheduler.max_model_len

    @property
    def num_requests(self) -> int:
        """Requests submitted that the core has not finished with yet."""
        return len(self._live)

    @property
    def core_pid(self) -> int:
        if self._process is None or self._process.pid is None:
            raise RuntimeError("the engine core is not started")
        return self._process.pid

    # ----- the process -----

    async def run(self, *, task_status: trio.TaskStatus["EngineClient"] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts the core, reports started once its workers hold their KV caches, then serves
        its outputs until cancelled; stops the core (and so its workers) on the way out, also
        when cancelled while the model loads."""
        parent_end, child_end = socket.socketpair()
        context = multiprocessing.get_context("spawn")
        # Not a daemon: the core starts the worker processes itself.
        process = context.Process(target=run_engine_core, args=(self._spec, child_end), name="engine-core")
        process.start()
        child_end.close()
        self._process = process
        link = self._link = MessageLink(parent_end)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.pump)
                self._model = await self._expect_ready(link)
                self._scheduler = self._scheduler.with_num_blocks(self._model.num_kv_blocks)
                nursery.start_soon(self._watch_process)
                task_status.started(self)
                await self._follow_core(link)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._stop_core()

    async def _expect_ready(self, link: MessageLink) -> CoreReady:
        message = await self._read(link)
        if isinstance(message, CoreReady):
            return message
        if isinstance(message, CoreFailed):
            raise EngineFailedError(message.message)
        assert self._process is not None
        await trio.to_thread.run_sync(self._process.join, 2.0)
        raise EngineFailedError(f"the engine core process exited before it was ready{self._exit_note()}")

    async def _read(self, link: MessageLink) -> CoreReady | CoreOutputs | CoreFailed | None:
        try:
            payload = await link.reader.read()
        except (FrameError, trio.BrokenResourceError):
            return None
        return None if payload is None else core_decoder.decode(payload)

    async def _follow_core(self, link: MessageLink) -> None:
        while (message := await self._read(link)) is not None:
            if isinstance(message, CoreOutputs):
                self._deliver(message)
            elif isinstance(message, CoreFailed):
                self._fail_all(message.message)
        await self._died("it closed its connection")

    async def _watch_process(self) -> None:
        """Notices the core's death at once, also while nothing is running."""
        assert self._process is not None
        await trio.lowlevel.wait_readable(self._process.sentinel)
        await trio.sleep(EXIT_GRACE_S)  # a failure report on the socket says more
        await self._died("its process exited")

    async def _died(self, reason: str) -> None:
        if self.failure is None:
            assert self._process is not None
            await trio.to_thread.run_sync(self._process.join, 2.0)
            self._fail_all(f"the engine core process died{self._exit_note()}: {reason}")

    def _exit_note(self) -> str:
        code = self._process.exitcode if self._process is not None else None
        return "" if code is None else f" (exit code {code})"

    async def _stop_core(self) -> None:
        """Tells the core to stop (it shuts its workers down first) and waits for it to exit."""
        process, link = self._process, self._link
        if process is None or link is None:
            return
        if process.is_alive():
            with contextlib.suppress(LinkClosedError):
                link.post(StopCore())
            with trio.move_on_after(STOP_GRACE_S):
                await link.flush()
            await trio.to_thread.run_sync(process.join, STOP_GRACE_S)
            if process.is_alive():
                log.warning("the engine core did not stop within %g s; killing it", STOP_GRACE_S)
                process.kill()
        await trio.to_thread.run_sync(process.join, 5.0)
        await link.aclose()

    # ----- requests -----

    def start_draining(self) -> None:
        """Refuses new requests from now on; the ones already submitted go on."""
        self.is_draining = True

    def check(self, prompt_token_ids: Sequence[int], sampling: SamplingParams) -> None:
        """Raises what `submit` would raise for this request, without submitting it."""
        if self.failure is not None:
            raise EngineFailedError(self.failure)
        if self.is_draining:
            raise EngineUnavailableError("the server is shutting down and accepts no new requests")
        vocab_size = self.model.vocab_size
        sampling.validate(vocab_size)
        if not prompt_token_ids:
            raise ValueError("the prompt is empty")
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= vocab_size:
            bad = next(t for t in prompt_token_ids if not 0 <= t < vocab_size)
            raise ValueError(f"prompt token id {bad} is outside the vocabulary (size {vocab_size})")
        if len(prompt_token_ids) + sampling.max_tokens > self.max_model_len:
            raise ValueError(
                f"this model's maximum context length is {self.max_model_len} tokens, but {len(prompt_token_ids)}"
                f" prompt tokens plus max_tokens {sampling.max_tokens} were requested"
            )
        if (refusal := self._scheduler.prompt_refusal(len(prompt_token_ids))) is not None:
            raise ValueError(refusal)

    def submit(self, prompt_token_ids: Sequence[int], sampling: SamplingParams) -> tuple[int, RequestStream]:
        """Queues a request. Raises ValueError naming what is wrong with it, EngineFailedError
        once the engine failed, EngineUnavailableError while it drains."""
        self.check(prompt_token_ids, sampling)
        assert self._link is not None
        prompt = list(prompt_token_ids)
        request_id = next(self._ids)
        arrival = time.time()
        detokenizer = IncrementalDetokenizer(
            self.tokenizer,
            prompt,
            sampling.stop,
            min_tokens=sampling.min_tokens,
            skip_special_tokens=sampling.skip_special_tokens,
        )
        stream = RequestStream(detokenizer, on_stop=partial(self.stop, request_id))
        try:
            self._link.post(AddRequest(request_id, prompt, sampling, arrival, time.monotonic()))
        except LinkClosedError as error:
            raise EngineFailedError("the engine core process is gone") from error
        self._live[request_id] = _Live(stream, len(prompt), arrival)
        self.metrics.request_received(len(prompt))
        return request_id, stream

    def abort(self, request_id: int) -> None:
        """Ends a request whose client went away; its KV blocks return to the pool at once."""
        self._end_early(request_id, "abort")

    def stop(self, request_id: int) -> None:
        """Ends a request whose reader found a stop string in its text."""
        self._end_early(request_id, "stop")

    def _end_early(self, request_id: int, reason: str) -> None:
        if request_id not in self._live or self._link is None:
            return  # already finished
        try:
            self._link.post(EndRequest(request_id, reason))
        except LinkClosedError:
            pass  # the core is gone; its death fails the request

    # ----- outputs -----

    def _deliver(self, outputs: CoreOutputs) -> None:
        started = time.perf_counter()
        live = self._live
        now = outputs.time
        ids = np.frombuffer(outputs.ids, dtype="<u8").tolist()
        token_ids = np.frombuffer(outputs.token_ids, dtype="<u4").tolist()
        if outputs.logprobs:
            for request_id, token, logprobs in zip(ids, token_ids, outputs.logprobs, strict=True):
                if (request := live.get(request_id)) is not None:
                    request.stream.push(token, now, logprobs)
        else:
            for request_id, token in zip(ids, token_ids, strict=True):
                if (request := live.get(request_id)) is not None:
                    request.stream.push(token, now)
        for prompt in outputs.prompt_logprobs:
            if (owner := live.get(prompt.request_id)) is not None:
                owner.stream.add_prompt_logprobs(owner.num_prompt_tokens, prompt.first_position, prompt.tokens)
        metrics = self.metrics
        if outputs.ids:
            metrics.tokens(np.frombuffer(outputs.ttfts, dtype="<f8"), np.frombuffer(outputs.tbts, dtype="<f8"))
        for step in outputs.iterations:
            metrics.iteration(
                num_tokens=step.num_tokens,
                num_prefill_tokens=step.num_prefill_tokens,
                num_output_tokens=step.num_output_tokens,
                engine_s=step.host_s,
                worker_s=step.execute_s,
                num_preempted=step.num_preempted,
            )
        self.recent_iterations.extend(outputs.iterations)
        for rejected in outputs.rejected:
            if (request := live.pop(rejected.request_id, None)) is not None:
                request.stream.fail(f"the engine core refused the request: {rejected.message}")
        for finished in outputs.finished:
            request = live.pop(finished.request_id, None)
            if request is None:
                continue
            first_scheduled = _optional(finished.first_scheduled_time)
            request.stream.finish(
                RequestOutcome(
                    finish_reason=finished.reason,
                    text="",  # the stream adds what its detokenizer held back
                    num_prompt_tokens=request.num_prompt_tokens,
                    num_output_tokens=finished.num_output_tokens,
                    arrival_time=request.arrival_time,
                    first_scheduled_time=first_scheduled,
                    num_preemptions=finished.num_preemptions,
                    num_cached_tokens=finished.num_cached_tokens,
                )
            )
            first_token = _optional(finished.first_token_time)
            times = RequestTimes(
                arrival=request.arrival_time,
                first_scheduled=first_scheduled,
                first_token=first_token,
                finished=finished.last_token_time if first_token is not None else finished.finished_time,
                num_prompt_tokens=request.num_prompt_tokens,
                num_output_tokens=finished.num_output_tokens,
            )
            metrics.request_finished(finished.reason, times)
        self.load = outputs.load
        self.publish_load()
        self.recent_deliveries.append((len(token_ids), time.perf_counter() - started))

    def publish_load(self) -> None:
        """Copies queue lengths and KV use into the metrics (also called when they are scraped)."""
        load = self.load
        self.metrics.set_load(
            num_waiting=load.num_waiting,
            num_running=load.num_running,
            num_used_blocks=load.num_used_blocks,
            num_blocks=self.model.num_kv_blocks,
        )

    def _fail_all(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("the engine failed: %s; failing %d requests", message, len(self._live))
        for request in self._live.values():
            request.stream.fail(message)
        self._live.clear()
        self.failed.set()
