"""The body of the engine-core process: starts the model workers, runs `EngineCore`, and serves
the front-end's messages until it says stop or goes away. The front-end alone stops it: SIGINT
and SIGTERM to the whole process group (Ctrl-C, a supervisor) are the front-end's to act on,
which drains the requests first.

Start-up failures (a bad iteration-log path, a model that does not fit, a worker that dies while
loading) are sent to the front-end as `CoreFailed` with the message the user should see, and
the process exits non-zero.
"""

import contextlib
import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from engine.core.engine_core import EngineCore
from engine.core.iteration_log import IterationLog, IterationLogHeader, scheduler_fields
from engine.errors import EngineFailedError
from engine.executor.worker_group import ModelSummary, WorkerGroup
from engine.heap import freeze_startup_heap
from engine.process_death import die_with_parent
from engine.scheduler import SchedulerConfig
from engine.wire.core_messages import (
    AddRequest,
    CoreFailed,
    CoreReady,
    EndRequest,
    StopCore,
    front_end_decoder,
)
from engine.wire.framing import FrameError
from engine.wire.message_link import LinkClosedError, MessageLink
from engine.wire.runner_config import ModelRunnerConfig

log = logging.getLogger("engine")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class CoreSpec:
    """What the core process is started with (picklable: the scheduler's config as its fields)."""

    runner: ModelRunnerConfig
    scheduler: dict[str, Any]
    worker_environment: dict[str, str] = field(default_factory=dict)
    """Where to write one line per iteration (`engine.core.iteration_log`); None: nowhere."""
    iteration_log: Path | None = None
    log_level: int = logging.INFO


def scheduler_config(fields: dict[str, Any]) -> SchedulerConfig:
    chunking = fields.get("dynamic_chunking")
    return SchedulerConfig(**{**fields, "dynamic_chunking": tuple(chunking) if chunking is not None else None})


def run_engine_core(spec: CoreSpec, connection: socket.socket) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=spec.log_level, format=LOG_FORMAT)
    if not trio.run(_serve, spec, connection):
        raise SystemExit(1)


async def _serve(spec: CoreSpec, connection: socket.socket) -> bool:
    """False when start-up failed."""
    link = MessageLink(connection)
    core = _Core()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.pump)
        # From the start, so that a stop while the model loads shuts the workers down.
        nursery.start_soon(_follow_front_end, link, core, nursery.cancel_scope)
        try:
            with IterationLog(spec.iteration_log) if spec.iteration_log else contextlib.nullcontext() as records:
                workers: WorkerGroup = await nursery.start(WorkerGroup(spec.runner, spec.worker_environment).run)
                assert workers.model is not None
                engine = EngineCore(scheduler_config(spec.scheduler), workers, link, records)
                if records is not None:
                    records.start(_iteration_log_header(spec, workers.model, engine))
                await nursery.start(engine.run)
                core.engine = engine
                link.post(_ready(workers))
                freeze_startup_heap()
                await trio.sleep_forever()
        except (ValueError, OSError, EngineFailedError) as error:
            log.debug("engine core start-up failed", exc_info=True)
            with contextlib.suppress(LinkClosedError):
                link.post(CoreFailed(str(error)))
            await _flush(link)
            nursery.cancel_scope.cancel()
            return False
    return True


@dataclass(slots=True)
class _Core:
    """The engine, once started."""

    engine: EngineCore | None = None


async def _follow_front_end(link: MessageLink, core: _Core, scope: trio.CancelScope) -> None:
    """Applies the front-end's messages; stops the core when it says stop or goes away."""
    while True:
        try:
            payload = await link.reader.read()
        except (FrameError, trio.BrokenResourceError):
            payload = None
        if payload is None:
            break
        match front_end_decoder.decode(payload):
            case AddRequest() as request if core.engine is not None:
                core.engine.add(request)
            case EndRequest(request_id=request_id, reason=reason) if core.engine is not None:
                core.engine.end(request_id, reason)
                core.engine.post_outputs()
            case StopCore():
                break
    scope.cancel()


async def _flush(link: MessageLink) -> None:
    """Gives the pump a moment to write what is queued (a start-up failure's message)."""
    with trio.move_on_after(2.0):
        while link.has_queued and not link.closed:
            await trio.sleep(0.01)


def _ready(workers: WorkerGroup) -> CoreReady:
    model = workers.model
    assert model is not None
    return CoreReady(
        vocab_size=model.vocab_size,
        eos_token_ids=list(model.eos_token_ids),
        max_model_len=model.max_model_len,
        num_kv_blocks=model.num_kv_blocks,
        block_size=model.block_size,
        tensor_parallel_size=model.tensor_parallel_size,
        pipeline_parallel_size=model.pipeline_parallel_size,
        device=model.device,
        dtype=model.dtype,
        attention_backend=model.attention_backend,
        worker_pids=workers.pids,
    )


def _iteration_log_header(spec: CoreSpec, model: ModelSummary, engine: EngineCore) -> IterationLogHeader:
    return IterationLogHeader(
        model=str(Path(spec.runner.model).resolve()),
        device=model.device,
        dtype=model.dtype,
        attention_backend=model.attention_backend,
        tensor_parallel_size=model.tensor_parallel_size,
        pipeline_parallel_size=model.pipeline_parallel_size,
        num_kv_blocks=model.num_kv_blocks,
        scheduler=scheduler_fields(engine.scheduler.config),
    )
