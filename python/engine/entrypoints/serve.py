"""Wires the engine together: the RPC and HTTP servers in this (the front-end) process, the
engine core in a process of its own, and the model workers under it.

`EngineServer.run` binds both ports first (a port in use fails before the model loads), then
starts the engine core (which starts the workers) and serves until cancelled. `drain` stops accepting requests and waits for
those in flight, up to `shutdown_timeout_s`. When the engine fails (a model worker died), every
request fails at once and `run` raises `EngineFailedError` `failure_exit_delay_s` later, so
the process exits non-zero and a supervisor restarts it.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import trio

from engine.core.core_process import CoreSpec
from engine.core.iteration_log import scheduler_fields
from engine.frontend.engine_client import EngineClient
from engine.frontend.engine_metrics import EngineMetrics
from engine.heap import freeze_startup_heap
from engine.wire.framing import DEFAULT_MAX_FRAME_BYTES
from engine.wire.runner_config import ModelRunnerConfig
from engine.errors import EngineFailedError
from engine.entrypoints.openai.http_front_door import HttpFrontDoor
from engine.entrypoints.openai.http_server import bind_http, bind_rpc, bound_port, http_config, is_loopback, serve_http
from engine.entrypoints.openai.app import ApiConfig, OpenAIApi
from engine.entrypoints.prompt import PromptTokenizer
from engine.entrypoints.rpc_server import RpcConfig, RpcServer
from engine.scheduler import SchedulerConfig
from engine.frontend.throughput_log import log_throughput
from engine.frontend.tokenizer import Tokenizer

log = logging.getLogger("engine")

DRAIN_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    rpc_port: int = 8001
    served_model_name: str = "demo"
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    api_key: str | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    hello_timeout_s: float = 10.0
    shutdown_timeout_s: float = 20.0
    failure_exit_delay_s: float = 3.0
    access_log: bool = True
    throughput_log_interval_s: float = 10.0
    """Where to write one line per iteration (`engine.core.iteration_log`); None: nowhere."""
    iteration_log: Path | None = None


@dataclass(frozen=True, slots=True)
class ServingAddresses:
    http_port: int
    rpc_port: int
    worker_pids: list[int]
    core_pid: int


def engine_version() -> str:
    try:
        return metadata.version("servekit-engine")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class EngineServer:
    def __init__(
        self,
        model_dir: Path,
        runner: ModelRunnerConfig,
        scheduler: SchedulerConfig,
        server: ServerConfig,
        *,
        worker_environment: Mapping[str, str] | None = None,
    ):
        self._model_dir = model_dir
        self._runner = runner
        self._scheduler = scheduler
        self._server = server
        self._worker_environment = worker_environment
        self.engine: EngineClient | None = None
        self._front_door: HttpFrontDoor | None = None
        self._rpc: RpcServer | None = None

    async def run(self, *, task_status: trio.TaskStatus[ServingAddresses] = trio.TASK_STATUS_IGNORED) -> None:
        server = self._server
        if not is_loopback(server.host) and server.api_key is None:
            log.warning(
                "listening on %s without --api-key: anyone who can reach this host can use the server",
                server.host,
            )
        http = http_config(server.host, server.port, server.header_timeout_s)
        http_sockets = bind_http(http)
        rpc_listeners = await bind_rpc(server.host, server.rpc_port)
        tokenizer = Tokenizer(self._model_dir)
        spec = CoreSpec(
            runner=self._runner,
            scheduler=scheduler_fields(self._scheduler),
            worker_environment=dict(self._worker_environment or {}),
            iteration_log=server.iteration_log,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        async with trio.open_nursery() as nursery:
            metrics = EngineMetrics(server.served_model_name)
            engine: EngineClient = await nursery.start(EngineClient(spec, self._scheduler, tokenizer, metrics).run)
            self.engine = engine
            model = engine.model
            prompts = PromptTokenizer(tokenizer, engine.max_model_len)
            rpc_config = RpcConfig(
                model_name=server.served_model_name,
                max_frame_bytes=server.max_frame_bytes,
                hello_timeout_s=server.hello_timeout_s,
                api_key=server.api_key,
            )
            self._rpc = RpcServer(engine, prompts, rpc_config)
            nursery.start_soon(self._rpc.serve, rpc_listeners)
            api_config = ApiConfig(
                model_name=server.served_model_name, version=engine_version(), body_timeout_s=server.body_timeout_s
            )
            api = OpenAIApi(engine, prompts, api_config, metrics.registry)
            self._front_door = HttpFrontDoor(api.app(), api_key=server.api_key, log_access=server.access_log)
            await nursery.start(serve_http, self._front_door, http, http_sockets)
            nursery.start_soon(log_throughput, engine, metrics, server.throughput_log_interval_s)
            nursery.start_soon(self._exit_after_failure, engine)
            http_port, rpc_port = bound_port(http_sockets), rpc_listeners[0].socket.getsockname()[1]
            log.info(
                "serving %s (%d KV blocks, max_model_len %d, policy %s, attention %s) on http://%s:%d "
                "(OpenAI API) and tcp://%s:%d (msgspec RPC); worker pids %s; engine core pid %d",
                server.served_model_name,
                model.num_kv_blocks,
                engine.max_model_len,
                self._scheduler.policy,
                model.attention_backend,
                server.host,
                http_port,
                server.host,
                rpc_port,
                ",".join(map(str, model.worker_pids)),
                engine.core_pid,
            )
            freeze_startup_heap()
            task_status.started(ServingAddresses(http_port, rpc_port, model.worker_pids, engine.core_pid))

    async def drain(self) -> None:
        """Refuses new requests and waits until none is left and every reply has been written,
        or `shutdown_timeout_s` passed."""
        engine = self.engine
        if engine is None:
            return
        engine.start_draining()
        timeout = self._server.shutdown_timeout_s
        log.info("draining: %d requests in flight, waiting up to %g s", engine.num_requests, timeout)
        with trio.move_on_after(timeout):
            while not self._is_idle() and engine.failure is None:
                await trio.sleep(DRAIN_POLL_S)
        if engine.num_requests:
            log.warning("shutting down with %d requests still in flight", engine.num_requests)

    def _is_idle(self) -> bool:
        engine, front_door, rpc = self.engine, self._front_door, self._rpc
        replies_written = (front_door is None or front_door.num_active == 0) and (rpc is None or rpc.is_idle)
        return engine is not None and engine.num_requests == 0 and replies_written

    async def _exit_after_failure(self, engine: EngineClient) -> None:
        await engine.failed.wait()
        delay = self._server.failure_exit_delay_s
        log.error("exiting in %g s with a non-zero status so that a supervisor can restart the server", delay)
        await trio.sleep(delay)
        raise EngineFailedError(engine.failure or "the engine failed")
