"""The body of one model worker process (one tensor-parallel rank)."""

import signal
import socket
import sys
import time
import traceback

import msgspec

from engine.process_death import die_with_parent
from engine.wire.framing import FrameEncoder, SocketFrameReader
from engine.wire.runner_config import ModelRunnerConfig
from engine.wire.worker_messages import (
    CacheReady,
    Executed,
    Execute,
    Failed,
    InitCache,
    Ready,
    Shutdown,
    command_decoder,
)

MAX_COMMAND_BYTES = 1 << 30


def run_worker(rank: int, config: ModelRunnerConfig, connection: socket.socket) -> None:
    die_with_parent()
    # Ctrl-C and a supervisor's SIGTERM reach the whole process group; the front-end drains its
    # requests, then the engine core shuts the workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = FrameEncoder()

    def reply(message: msgspec.Struct) -> None:
        connection.sendall(frames.frame(message))

    from engine.worker.model_runner import ModelRunner  # torch is imported in the workers only

    runner: ModelRunner | None = None
    replier = (config.pipeline_parallel_size - 1) * config.tensor_parallel_size
    try:
        runner = ModelRunner(config, rank)
        info = runner.model_info
        reply(
            Ready(
                rank=rank,
                vocab_size=info.vocab_size,
                eos_token_ids=list(info.eos_token_ids),
                max_model_len=info.max_model_len,
                num_kv_blocks=runner.determine_num_kv_blocks(),
                block_size=info.block_size,
                device=info.device,
                dtype=info.dtype,
                attention_backend=info.attention_backend,
            )
        )
        commands = SocketFrameReader(connection, MAX_COMMAND_BYTES)
        previous_end = time.perf_counter()
        while (command := commands.read(command_decoder)) is not None:
            match command:
                case Execute(step=step):
                    start = time.perf_counter()
                    output = runner.execute(step)
                    # The idle time runs from here: answering, then waiting for the next step.
                    end = output.sent_at = time.perf_counter()
                    output.execute_s = end - start
                    output.idle_s = start - previous_end
                    if rank == replier:
                        reply(Executed(output))
                    previous_end = end
                case InitCache(num_blocks=num_blocks):
                    runner.init_kv_cache(num_blocks)
                    reply(CacheReady(rank, runner.cuda_graphs))
                case Shutdown():
                    break
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        try:
            reply(Failed(rank, f"{type(error).__name__}: {error}"))
        except OSError:
            pass
        raise SystemExit(1) from error
    finally:
        if runner is not None:
            runner.shutdown()
        connection.close()
