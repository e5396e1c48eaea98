"""Open-loop load: every request is sent at its arrival time, whatever is still running.

One dispatcher task sleeps until each arrival and starts that request's task; nothing it does
waits on an earlier request, so an arrival is never dropped or delayed by a busy target (each
record keeps both when it was due and when it went out, so any lag shows). The optional
`max_concurrency` turns this into a closed loop for studies that want one: an arrival then waits
for a free slot, which the run's configuration and report state.

A session's later turn (a request that `follows_id` another) is the one dependency: it is not
sent at a time of its own but `think_time_s` after the request it follows has ended, its prompt
given as the new user message only and continued from the prompt and answer text before it
(`metron.sessions.next_turn`). An interrupted turn ends its session.

Stopping (Ctrl-C with `handle_sigint`, or `stop()`) cancels in-flight requests; they are kept as
`interrupted` with the tokens they had, and requests not yet sent are left out. `max_seconds`
ends a run the same way at that time after its start, and the result says it was cut.
"""

import gc
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import msgspec
import trio

from metron.metrics import RequestTimes
from metron.sessions import Turn, first_turn, next_turn
from metron.targets.base import StreamRequest, Target, TargetError
from metron.workload import RequestSpec


class LoadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`spin_s`: the dispatcher sleeps until this long before an arrival, then yields to other
    tasks in a loop until the arrival time, because the event loop's sleeps wake up to 1 ms late
    (epoll counts whole milliseconds). 0 turns the spin off. `max_seconds`: the run stops this
    long after its first arrival is due, whatever is still running or not yet sent."""

    max_concurrency: int | None = None
    max_seconds: float | None = None
    request_timeout_s: float = 600.0
    start_delay_s: float = 0.1
    spin_s: float = 0.001

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_seconds is not None and not (self.max_seconds > 0 and math.isfinite(self.max_seconds)):
            raise ValueError(f"max_seconds must be a positive number of seconds, got {self.max_seconds}")
        if not (self.request_timeout_s > 0 and math.isfinite(self.request_timeout_s)):
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s}")
        if not self.start_delay_s >= 0:
            raise ValueError(f"start_delay_s must not be negative, got {self.start_delay_s}")
        if not 0 <= self.spin_s <= 0.01:
            raise ValueError(f"spin_s must be in [0, 0.01] s, got {self.spin_s}")

    @property
    def is_open_loop(self) -> bool:
        return self.max_concurrency is None


class LoadResult(msgspec.Struct):
    measured: list[RequestTimes]
    interrupted: bool
    origin_perf_counter_s: float
    """`time.perf_counter()` at the run's time 0, to line records up with other processes' clocks."""
    cut: bool = False
    """Whether `max_seconds` ended the run before every request was done."""


class _Recorder:
    """The TokenSink of one request: stamps token arrivals on the run's clock."""

    __slots__ = (
        "origin", "token_times", "server_times", "delay", "server_prompt_tokens", "server_cached_tokens", "texts"
    )

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.token_times: list[float] = []
        self.server_times: list[float] = []
        self.delay: float | None = None
        self.server_prompt_tokens: int | None = None
        self.server_cached_tokens: int | None = None
        self.texts: list[str] = []

    def now(self) -> float:
        return trio.current_time() - self.origin

    def tokens(self, count: int, at: float | None = None, server_time_s: float | None = None) -> None:
        when = self.now() if at is None else at
        self.token_times.extend([when] * count)
        if server_time_s is not None:
            self.server_times.extend([server_time_s] * count)

    def scheduling_delay(self, seconds: float) -> None:
        self.delay = seconds

    def prompt_tokens(self, count: int) -> None:
        self.server_prompt_tokens = count

    def cached_prompt_tokens(self, count: int) -> None:
        self.server_cached_tokens = count

    def answer_text(self, text: str) -> None:
        self.texts.append(text)


class LoadGenerator:
    def __init__(self, target: Target, config: LoadConfig) -> None:
        self.target = target
        self.config = config
        self._cancel_scope: trio.CancelScope | None = None
        self._stopped = False
        self._cut = False

    def stop(self) -> None:
        """Ends the run now, keeping what was measured."""
        self._stopped = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def run(
        self,
        requests: Sequence[tuple[RequestSpec, Turn | str]],
        on_done: Callable[[RequestTimes], None] | None = None,
        handle_sigint: bool = False,
    ) -> LoadResult:
        """Sends each (request, what it sends) at its arrival time: a first turn's `Turn` (or its
        prompt, sent as one user message); a session's later turn, its new user message, after the
        turn before it. Returns what was measured, in id order."""
        with _older_objects_out_of_the_collectors_sight():
            return await self._run(requests, on_done, handle_sigint)

    async def _run(
        self,
        requests: Sequence[tuple[RequestSpec, Turn | str]],
        on_done: Callable[[RequestTimes], None] | None,
        handle_sigint: bool,
    ) -> LoadResult:
        measured: dict[int, RequestTimes] = {}
        origin = trio.current_time() + self.config.start_delay_s
        origin_perf_counter = time.perf_counter() + (origin - trio.current_time())
        slots = trio.Semaphore(self.config.max_concurrency) if self.config.max_concurrency else None
        followers: dict[int, tuple[RequestSpec, str]] = {}
        for spec, sent in requests:
            if spec.follows_id is None:
                continue
            if not isinstance(sent, str):
                raise ValueError(f"request {spec.id} is a later turn: it sends its new user message, not a Turn")
            followers[spec.follows_id] = (spec, sent)

        async def follow(spec: RequestSpec, turn: Turn, nursery: trio.Nursery) -> None:
            due = trio.current_time() + spec.think_time_s
            await trio.sleep_until(due)
            if slots is not None:
                await slots.acquire()
            await one(msgspec.structs.replace(spec, arrival_s=due - origin), turn, nursery)

        async def one(spec: RequestSpec, turn: Turn, nursery: trio.Nursery) -> None:
            recorder = _Recorder(origin)
            sent = recorder.now()
            error: str | None = None
            interrupted = False
            try:
                with trio.fail_after(self.config.request_timeout_s):
                    await self.target.stream(
                        StreamRequest(
                            id=spec.id,
                            prompt=turn.prompt,
                            prompt_tokens=spec.prompt_tokens,
                            output_tokens=spec.output_tokens,
                            messages=turn.messages,
                        ),
                        recorder,
                    )
            except trio.TooSlowError:
                error = f"no end of stream within {self.config.request_timeout_s} s"
            except TargetError as failure:
                error = str(failure)
            except Exception as failure:  # a fault in the target's code still ends only this request
                error = f"{type(failure).__name__}: {failure}"
            except BaseException:
                # Cancelled, also wrapped in a group by a nursery inside the target (trio's
                # open_tcp_stream cancelled while it connects).
                interrupted = True
                raise
            finally:
                if slots is not None:
                    slots.release()
                times = RequestTimes(
                    id=spec.id,
                    arrival_s=sent,
                    prompt_tokens=(
                        spec.prompt_tokens if recorder.server_prompt_tokens is None else recorder.server_prompt_tokens
                    ),
                    requested_prompt_tokens=spec.prompt_tokens,
                    token_times_s=recorder.token_times,
                    requested_output_tokens=spec.output_tokens,
                    scheduling_delay_s=recorder.delay,
                    error=error,
                    interrupted=interrupted,
                    scheduled_arrival_s=spec.arrival_s,
                    warmup=spec.warmup,
                    server_token_times_s=recorder.server_times or None,
                    cached_prompt_tokens=recorder.server_cached_tokens,
                )
                measured[spec.id] = times
                if on_done is not None and not interrupted:
                    on_done(times)
                if spec.id in followers and not interrupted:
                    follower, message = followers[spec.id]
                    nursery.start_soon(follow, follower, next_turn(turn, "".join(recorder.texts), message), nursery)

        async def dispatch(nursery: trio.Nursery) -> None:
            firsts = [(spec, prompt) for spec, prompt in requests if spec.follows_id is None]
            for spec, prompt in sorted(firsts, key=lambda pair: (pair[0].arrival_s, pair[0].id)):
                due = origin + spec.arrival_s
                await trio.sleep_until(due - self.config.spin_s)
                while trio.current_time() < due:
                    await trio.lowlevel.checkpoint()
                if slots is not None:
                    await slots.acquire()
                nursery.start_soon(one, spec, prompt if isinstance(prompt, Turn) else first_turn(prompt), nursery)

        async def watch_sigint() -> None:
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    self.stop()

        async def cut_at_max_seconds(scope: trio.CancelScope, max_seconds: float) -> None:
            await trio.sleep_until(origin + max_seconds)
            self._cut = True
            scope.cancel()

        with trio.CancelScope() as scope:
            self._cancel_scope = scope
            if self._stopped:
                scope.cancel()
            async with trio.open_nursery() as nursery:
                if handle_sigint:
                    nursery.start_soon(watch_sigint)
                if self.config.max_seconds is not None:
                    nursery.start_soon(cut_at_max_seconds, scope, self.config.max_seconds)
                async with trio.open_nursery() as requests_nursery:
                    await dispatch(requests_nursery)
                nursery.cancel_scope.cancel()
        return LoadResult(
            measured=[measured[key] for key in sorted(measured)],
            interrupted=self._stopped,
            origin_perf_counter_s=origin_perf_counter,
            cut=self._cut,
        )


@contextmanager
def _older_objects_out_of_the_collectors_sight() -> Iterator[None]:
    """Collects garbage once, before the run's clock starts, then freezes what survives until the
    run ends. A full collection walks every tracked object: in a long-lived process (a notebook,
    a capacity search, a test session) that walk stalled the event loop for 40-50 ms mid-run,
    which landed in send times and token stamps. Frozen, only the run's own objects are walked."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
