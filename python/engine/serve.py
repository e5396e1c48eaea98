"""Wires the engine together: worker processes, the engine actor, the RPC and HTTP servers."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from engine.engine_core import EngineConfig, EngineCore
from engine.engine_metrics import EngineMetrics
from engine.framing import DEFAULT_MAX_FRAME_BYTES
from engine.model_runner_config import ModelRunnerConfig
from engine.server.http_server import serve_http
from engine.server.openai_app import OpenAIApi
from engine.server.rpc_server import RpcServer
from engine.tokenizer import Tokenizer
from engine.worker.worker_group import WorkerGroup

log = logging.getLogger("engine")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    rpc_port: int = 8001
    served_model_name: str = "demo"
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES


@dataclass(frozen=True, slots=True)
class ServingAddresses:
    http_port: int
    rpc_port: int
    worker_pids: list[int]


async def serve(
    model_dir: Path,
    runner: ModelRunnerConfig,
    engine_config: EngineConfig,
    server: ServerConfig,
    *,
    worker_environment: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[ServingAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    tokenizer = Tokenizer(model_dir)
    async with trio.open_nursery() as nursery:
        group = WorkerGroup(runner, runner.tensor_parallel_size, worker_environment)
        workers: WorkerGroup = await nursery.start(group.run)
        metrics = EngineMetrics(server.served_model_name)
        engine = EngineCore(engine_config, workers, tokenizer, metrics)
        await nursery.start(engine.run)
        rpc = RpcServer(engine, server.served_model_name, server.max_frame_bytes)
        rpc_port = await nursery.start(rpc.run, server.host, server.rpc_port)
        api = OpenAIApi(engine, server.served_model_name, metrics.registry)
        http_port = await nursery.start(serve_http, api.app(), server.host, server.port)
        log.info(
            "serving %s (%d KV blocks, max_model_len %d, policy %s) on http://%s:%d (OpenAI API)"
            " and tcp://%s:%d (msgspec RPC); worker pids %s",
            server.served_model_name,
            engine.model.num_kv_blocks,
            engine.max_model_len,
            engine_config.policy,
            server.host,
            http_port,
            server.host,
            rpc_port,
            ",".join(map(str, workers.pids)),
        )
        task_status.started(ServingAddresses(http_port, rpc_port, workers.pids))
