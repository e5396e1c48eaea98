"""The engine's handle on its model worker processes: starts them, sizes the KV cache from what
every rank can hold, broadcasts each step, returns rank 0's output, and notices a dead rank."""

import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

import msgspec
import trio

from engine.wire.framing import FrameEncoder, FrameError, FrameReader
from engine.wire.runner_config import ModelRunnerConfig
from engine.errors import EngineFailedError
from engine.wire.step import StepInput, StepOutput
from engine.wire.worker_messages import (
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

log = logging.getLogger("engine")

Reply = TypeVar("Reply", Ready, CacheReady, Executed)

MAX_REPLY_BYTES = 1 << 28
SHUTDOWN_GRACE_S = 10.0
PROCESS_EXIT_GRACE_S = 0.2
DEATH_JOIN_S = 10.0


class WorkerDiedError(EngineFailedError):
    pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ModelSummary:
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    max_model_len: int
    num_kv_blocks: int
    block_size: int
    pipeline_parallel_size: int = 1
    tensor_parallel_size: int = 1
    device: str = ""
    dtype: str = ""
    attention_backend: str = ""


def cpu_worker_environment(num_workers: int, num_cpus: int | None = None) -> dict[str, str]:
    """Thread settings for CPU workers. libgomp's default spin-wait keeps torch's threads busy for
    a while after every forward, starving the engine's processes on small machines; a short spin
    keeps parallel regions fast. The workers share all cores but one, which the engine core and
    the front-end keep: threads that compete with them for a core stall every parallel region
    they are in (on two cores, a decode step with two threads took twice as long as with one)."""
    cpus = num_cpus or os.cpu_count() or 1
    return {"GOMP_SPINCOUNT": "5000", "OMP_NUM_THREADS": str(max(1, (cpus - 1) // max(num_workers, 1)))}


@contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """Sets variables for processes started inside the block (spawn copies os.environ)."""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


class WorkerGroup:
    """`environment`: variables set for the worker processes only (e.g. CPU_WORKER_ENVIRONMENT)."""

    def __init__(self, config: ModelRunnerConfig, environment: Mapping[str, str] | None = None):
        self._config = config
        self._num_ranks = config.num_processes
        # The first tensor-parallel rank of the last pipeline stage samples and answers each step.
        self._replier = (config.pipeline_parallel_size - 1) * config.tensor_parallel_size
        self._environment = dict(environment or {})
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._sockets: list[socket.socket] = []
        self._streams: list[trio.SocketStream] = []
        self._readers: list[FrameReader] = []
        self._frames = FrameEncoder()
        self._pending: trio.CancelScope | None = None
        self.failure: str | None = None
        self.failed = trio.Event()
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
                ready = await self._expect(rank, CacheReady)
                if rank == 0:
                    log.info("%s", ready.cuda_graphs)
            first = readies[0]
            self.model = ModelSummary(
                first.vocab_size,
                tuple(first.eos_token_ids),
                first.max_model_len,
                num_blocks,
                first.block_size,
                self._config.pipeline_parallel_size,
                self._config.tensor_parallel_size,
                first.device,
                first.dtype,
                first.attention_backend,
            )
            task_status.started(self)
            async with trio.open_nursery() as nursery:
                for rank in range(self._num_ranks):
                    nursery.start_soon(self._watch_process, rank)
                for rank in range(self._num_ranks):
                    if rank != self._replier:
                        nursery.start_soon(self._watch, rank)
                await trio.sleep_forever()  # serve until cancelled (engine shutdown)
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown()

    async def execute(self, step: StepInput) -> StepOutput:
        """Sends `step` and waits for its output."""
        await self.send(step)
        return await self.receive()

    async def send(self, step: StepInput) -> None:
        """Hands `step` to every rank; they run the steps they get in order. Several may be
        outstanding (pipelined), each answered by one `receive`."""
        if self.failure is not None:
            raise WorkerDiedError(self.failure)
        await self._broadcast(Execute(step))

    async def receive(self) -> StepOutput:
        """The output of the oldest step sent and not yet received."""
        if self.failure is not None:
            raise WorkerDiedError(self.failure)
        with trio.CancelScope() as scope:
            self._pending = scope
            executed = await self._expect(self._replier, Executed)
        self._pending = None
        if scope.cancelled_caught:
            raise WorkerDiedError(self.failure or "a model worker died")
        return executed.output

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        # A fresh rendezvous port, so several engines can run tensor-parallel side by side.
        config = replace(self._config, distributed_init_method=f"tcp://127.0.0.1:{_free_port()}")
        for rank in range(self._num_ranks):
            parent_end, child_end = socket.socketpair()
            process = context.Process(
                target=run_worker,
                args=(rank, config, child_end),
                name=f"engine-worker-{rank}",
                daemon=True,
            )
            with _environment(self._environment):
                process.start()
            child_end.close()
            self._processes.append(process)
            self._sockets.append(parent_end)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent_end))
            self._streams.append(stream)
            self._readers.append(FrameReader(stream, MAX_REPLY_BYTES))

    async def _broadcast(self, message: msgspec.Struct) -> None:
        """Sends to every rank. The first attempt is a plain non-blocking send that does not yield
        to other tasks, so the workers start computing before any stream reader runs."""
        payload = self._frames.frame(message)
        unsent = []
        for rank, sock in enumerate(self._sockets):
            try:
                sent = sock.send(payload)
            except BlockingIOError:
                sent = 0
            except OSError:
                await self._died(rank, "its connection broke")
            if sent < len(payload):
                unsent.append((rank, bytes(payload[sent:])))
        for rank, rest in unsent:
            try:
                await self._streams[rank].send_all(rest)
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
        """Ranks other than the replier never speak after start-up: anything they send means they failed."""
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

    async def _watch_process(self, rank: int) -> None:
        """Notices a rank's death at once, also while no step is running."""
        sentinel = self._processes[rank].sentinel
        await trio.lowlevel.wait_readable(sentinel)
        await trio.sleep(PROCESS_EXIT_GRACE_S)  # a failure report on the socket says more
        if self.failure is not None:
            return
        try:
            await self._died(rank, "its process exited")
        except WorkerDiedError:
            pass

    async def _died(self, rank: int, reason: str) -> NoReturn:
        process = self._processes[rank]
        # Long enough for a rank that reported its failure to finish exiting on a loaded machine.
        await trio.to_thread.run_sync(process.join, DEATH_JOIN_S)
        exit_note = "" if process.exitcode is None else f" (exit code {process.exitcode})"
        if self.failure is None:
            self.failure = f"model worker rank {rank} died{exit_note}: {reason}"
        if self._pending is not None:
            self._pending.cancel()
        self.failed.set()
        raise WorkerDiedError(self.failure)

    async def _shutdown(self) -> None:
        with trio.move_on_after(SHUTDOWN_GRACE_S):
            payload = bytes(self._frames.frame(Shutdown()))
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
