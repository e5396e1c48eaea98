"""The engine's handle on its model worker processes: starts them, sizes the KV cache from what
every rank can hold, broadcasts each step, returns rank 0's output, and notices a dead rank."""

import multiprocessing
import socket
import time
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import msgspec
import trio

from engine.framing import FrameError, FrameReader, frame
from engine.model_runner import ModelRunnerConfig
from engine.request_stream import EngineFailedError
from engine.step import StepInput, StepOutput
from engine.worker.messages import (
    CacheReady,
    Executed,
    Execute,
    Failed,
    InitCache,
    Ready,
    Shutdown,
    reply_decoder,
)
from engine.worker.worker_main import run_worker

Reply = TypeVar("Reply", Ready, CacheReady, Executed)

MAX_REPLY_BYTES = 1 << 28
SHUTDOWN_GRACE_S = 10.0


class WorkerDiedError(EngineFailedError):
    pass


@dataclass(frozen=True, slots=True)
class ModelSummary:
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    max_model_len: int
    num_kv_blocks: int


class WorkerGroup:
    def __init__(self, config: ModelRunnerConfig, num_ranks: int):
        self._config = config
        self._num_ranks = num_ranks
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._streams: list[trio.SocketStream] = []
        self._readers: list[FrameReader] = []
        self._encoder = msgspec.msgpack.Encoder()
        self._pending: trio.CancelScope | None = None
        self.failure: str | None = None
        self.model: ModelSummary | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    async def run(self, *, task_status: trio.TaskStatus["WorkerGroup"] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts the workers, reports ready once every rank holds its KV cache, then watches them."""
        try:
            self._spawn()
            readies = [await self._expect(rank, Ready) for rank in range(self._num_ranks)]
            num_blocks = min(ready.num_kv_blocks for ready in readies)
            if num_blocks < 1:
                raise WorkerDiedError("the model leaves no memory for the KV cache")
            await self._broadcast(InitCache(num_blocks))
            for rank in range(self._num_ranks):
                await self._expect(rank, CacheReady)
            first = readies[0]
            self.model = ModelSummary(first.vocab_size, tuple(first.eos_token_ids), first.max_model_len, num_blocks)
            task_status.started(self)
            async with trio.open_nursery() as nursery:
                for rank in range(1, self._num_ranks):
                    nursery.start_soon(self._watch, rank)
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown()

    async def execute(self, step: StepInput) -> StepOutput:
        if self.failure is not None:
            raise WorkerDiedError(self.failure)
        with trio.CancelScope() as scope:
            self._pending = scope
            await self._broadcast(Execute(step))
            executed = await self._expect(0, Executed)
        self._pending = None
        if scope.cancelled_caught:
            raise WorkerDiedError(self.failure or "a model worker died")
        return executed.output

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        for rank in range(self._num_ranks):
            parent_end, child_end = socket.socketpair()
            process = context.Process(
                target=run_worker,
                args=(rank, self._config, child_end),
                name=f"engine-worker-{rank}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._processes.append(process)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent_end))
            self._streams.append(stream)
            self._readers.append(FrameReader(stream, MAX_REPLY_BYTES))

    async def _broadcast(self, message: msgspec.Struct) -> None:
        payload = frame(self._encoder.encode(message))
        for rank, stream in enumerate(self._streams):
            try:
                await stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._died(rank, "its connection broke")

    async def _expect(self, rank: int, kind: type[Reply]) -> Reply:
        try:
            payload = await self._readers[rank].read()
        except (FrameError, trio.BrokenResourceError) as error:
            await self._died(rank, str(error))
        if payload is None:
            await self._died(rank, "it closed its connection")
        message = reply_decoder.decode(payload)
        if isinstance(message, Failed):
            await self._died(rank, message.message)
        if not isinstance(message, kind):
            await self._died(rank, f"it sent {type(message).__name__}, expected {kind.__name__}")
        return message

    async def _watch(self, rank: int) -> None:
        """Ranks other than 0 never speak after start-up: anything they send means they failed."""
        try:
            payload = await self._readers[rank].read()
            reason = "it closed its connection" if payload is None else "it reported a failure"
            if payload is not None and isinstance(failed := reply_decoder.decode(payload), Failed):
                reason = failed.message
        except (FrameError, trio.BrokenResourceError) as error:
            reason = str(error)
        try:
            await self._died(rank, reason)
        except WorkerDiedError:
            pass

    async def _died(self, rank: int, reason: str) -> NoReturn:
        process = self._processes[rank]
        await trio.to_thread.run_sync(process.join, 2.0)
        exit_note = "" if process.exitcode is None else f" (exit code {process.exitcode})"
        if self.failure is None:
            self.failure = f"model worker rank {rank} died{exit_note}: {reason}"
        if self._pending is not None:
            self._pending.cancel()
        raise WorkerDiedError(self.failure)

    async def _shutdown(self) -> None:
        with trio.move_on_after(SHUTDOWN_GRACE_S):
            payload = frame(self._encoder.encode(Shutdown()))
            for stream in self._streams:
                try:
                    await stream.send_all(payload)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            deadline = time.monotonic() + SHUTDOWN_GRACE_S / 2
            for process in self._processes:
                await trio.to_thread.run_sync(process.join, max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.kill()
                await trio.to_thread.run_sync(process.join, 2.0)
        for stream in self._streams:
            await stream.aclose()
