"""`python -m engine`: serve a model over the OpenAI-compatible HTTP API and the msgspec RPC."""

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from engine.wire.framing import DEFAULT_MAX_FRAME_BYTES
from engine.model_config import load_model_config
from engine.wire.runner_config import ATTENTION_BACKENDS, ModelRunnerConfig
from engine.errors import EngineFailedError
from engine.scheduler import POLICIES, SchedulerConfig
from engine.entrypoints.serve import EngineServer, ServerConfig
from engine.executor.worker_group import cpu_worker_environment

log = logging.getLogger("engine")

API_KEY_VARIABLE = "ENGINE_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Serve a Hugging Face Llama-family model with stall-free batching. "
        "Without --model, serves a small built-in demo model (random weights, local tokenizer).",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, help="a Hugging Face model directory (default: the demo model)")
    model.add_argument("--served-model-name", help="the name clients use (default: the directory's name)")
    model.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    model.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    model.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks per pipeline stage")
    model.add_argument(
        "--pp", type=int, default=1, help="pipeline stages (the layers split over them; --pp x --tp worker processes)"
    )
    model.add_argument("--max-model-len", type=int, help="default: the model's maximum")
    model.add_argument("--attention-backend", default="auto", choices=ATTENTION_BACKENDS)
    model.add_argument(
        "--enforce-eager",
        action="store_true",
        help="run every step eagerly (default on CUDA: decode-only steps replay CUDA graphs captured at start-up; "
        "the CPU always runs eagerly)",
    )

    cache = parser.add_argument_group("KV cache")
    cache.add_argument("--block-size", type=int, help="tokens per KV block (default 16)")
    cache.add_argument("--num-kv-blocks", type=int, help="exact number of KV blocks")
    cache.add_argument("--kv-cache-memory-gib", type=float, help="CPU: memory for the KV cache (default 1 GiB)")
    cache.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="GPU: fraction of memory to use")
    cache.add_argument("--enable-prefix-caching", action="store_true", default=None)

    scheduling = parser.add_argument_group("scheduling")
    scheduling.add_argument("--policy", choices=POLICIES, help="default: sarathi")
    scheduling.add_argument(
        "--token-budget",
        type=int,
        help="most tokens in one iteration (sarathi's prefill chunk, default 512; the other policies run whole "
        "prompts, default max_model_len)",
    )
    scheduling.add_argument("--max-num-seqs", type=int, help="most requests running at once (default 128)")
    scheduling.add_argument(
        "--no-async-scheduling",
        dest="async_scheduling",
        action="store_false",
        help="schedule each step only once the previous one has finished (default: the next step is "
        "scheduled and sent while the current one runs, so the workers never wait for the engine)",
    )

    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=8000, help="HTTP (OpenAI API) port")
    serving.add_argument("--rpc-port", type=int, default=8001, help="msgspec RPC port")
    serving.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    serving.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_VARIABLE),
        help=f"require this key (HTTP `Authorization: Bearer KEY`, RPC Hello); default ${API_KEY_VARIABLE}",
    )
    serving.add_argument("--header-timeout", type=float, default=10.0,
                         help="seconds for a request's headers to arrive (also the keep-alive idle time)")
    serving.add_argument("--body-timeout", type=float, default=30.0, help="seconds for a request body to arrive")
    serving.add_argument("--hello-timeout", type=float, default=10.0, help="seconds for an RPC client's Hello")
    serving.add_argument("--shutdown-timeout", type=float, default=20.0,
                         help="on SIGTERM/SIGINT, seconds to let requests in flight finish (a second signal: at once)")
    serving.add_argument("--failure-exit-delay", type=float, default=3.0,
                         help="seconds between a model worker's death and the exit (status 1)")
    serving.add_argument("--no-access-log", action="store_true", help="no log line per HTTP request")
    serving.add_argument("--log-stats-interval", type=float, default=10.0,
                         help="seconds between throughput log lines while busy (0: none)")
    serving.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serving.add_argument(
        "--iteration-log",
        type=Path,
        help="write one JSON line per iteration (its batch, model and host times) to this file, for "
        "calibrating and validating the simulator (`vidur fit-overheads`, `vidur validate`)",
    )
    return parser


async def _stop_on_signals(signals: AsyncIterator[int], server: EngineServer, serving: trio.CancelScope) -> None:
    """The first SIGINT/SIGTERM drains the server, then stops it; the second stops it at once;
    later ones are noted, not fatal."""

    async def drain_then_stop() -> None:
        await server.drain()
        serving.cancel()

    async with trio.open_nursery() as nursery:
        draining = False
        async for received in signals:
            name = signal.Signals(received).name
            if serving.cancel_called:
                log.info("received %s again; still shutting down the workers", name)
            elif draining:
                log.info("received %s again, stopping now", name)
                serving.cancel()
            else:
                log.info("received %s, shutting down", name)
                draining = True
                nursery.start_soon(drain_then_stop)


def worker_environment(device: str, num_workers: int) -> dict[str, str]:
    """Worker variables for the device, leaving alone any the user set. `auto` is resolved in
    the workers (PyTorch stays out of this process); an NVIDIA device node stands for CUDA here."""
    on_cpu = device == "cpu" or (device == "auto" and not Path("/dev/nvidiactl").exists())
    defaults = cpu_worker_environment(num_workers) if on_cpu else {}
    return {name: value for name, value in defaults.items() if name not in os.environ}


async def _run(model_dir: Path, runner: ModelRunnerConfig, scheduler: SchedulerConfig, server: ServerConfig) -> None:
    environment = worker_environment(runner.device, runner.num_processes)
    engine_server = EngineServer(model_dir, runner, scheduler, server, worker_environment=environment)
    # The receiver stays open until the workers are down, so a second Ctrl-C cannot cut the
    # shutdown short with a KeyboardInterrupt.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            serving = trio.CancelScope()
            nursery.start_soon(_stop_on_signals, signals, engine_server, serving)
            with serving:
                await engine_server.run()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        model_dir = default_demo_model_dir()
        default_name = "demo"
    else:
        model_dir = args.model
        default_name = args.model.resolve().name
    try:
        model = load_model_config(model_dir)
        max_model_len = args.max_model_len or model.max_position_embeddings
        if max_model_len > model.max_position_embeddings:
            raise ValueError(
                f"--max-model-len {max_model_len} exceeds the model's max_position_embeddings "
                f"({model.max_position_embeddings})"
            )
        scheduler = SchedulerConfig(
            policy=args.policy,
            token_budget=args.token_budget,
            max_num_seqs=args.max_num_seqs,
            max_model_len=max_model_len,
            block_size=args.block_size,
            enable_prefix_caching=args.enable_prefix_caching,
            # Pipeline stages run one batch each, of different requests; one stage overlaps
            # the next batch's scheduling with the current one (async scheduling).
            async_scheduling=args.async_scheduling and args.pp == 1,
            max_batches_in_flight=args.pp if args.pp > 1 else 2 if args.async_scheduling else 1,
        )
        runner = ModelRunnerConfig(
            model=str(model_dir),
            dtype=args.dtype,
            device=args.device,
            tensor_parallel_size=args.tp,
            pipeline_parallel_size=args.pp,
            max_model_len=scheduler.max_model_len,
            block_size=scheduler.block_size,
            num_kv_blocks=args.num_kv_blocks,
            kv_cache_memory_gib=args.kv_cache_memory_gib,
            gpu_memory_utilization=args.gpu_memory_utilization,
            attention_backend=args.attention_backend,
            enforce_eager=args.enforce_eager,
            token_budget=scheduler.token_budget,
            max_num_seqs=scheduler.max_num_seqs,
        )
        server = ServerConfig(
            host=args.host,
            port=args.port,
            rpc_port=args.rpc_port,
            served_model_name=args.served_model_name or default_name,
            max_frame_bytes=args.max_frame_bytes,
            api_key=args.api_key or None,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            hello_timeout_s=args.hello_timeout,
            shutdown_timeout_s=args.shutdown_timeout,
            failure_exit_delay_s=args.failure_exit_delay,
            access_log=not args.no_access_log,
            throughput_log_interval_s=args.log_stats_interval,
            iteration_log=args.iteration_log,
        )
        trio.run(_run, model_dir, runner, scheduler, server)
    except Exception as error:
        reasons = _leaves(error)
        if not all(isinstance(reason, EXPECTED_ERRORS) for reason in reasons):
            raise
        for reason in reasons:
            log.error("%s", reason)
        return 1
    return 0


EXPECTED_ERRORS = (ValueError, OSError, EngineFailedError)


def _leaves(error: BaseException) -> list[BaseException]:
    """The individual errors inside (possibly nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


if __name__ == "__main__":
    sys.exit(main())
