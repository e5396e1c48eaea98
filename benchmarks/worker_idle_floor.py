"""The least the model worker's idle time between two steps can be on this machine: the worker's
own path between forwards, without a model or an engine around it.

Two processes stand in for the engine core and a model worker, joined by a socket pair as the
engine joins them, and pass the engine's own messages with its own framing: the core keeps one
`Execute` waiting (async scheduling), the worker "forwards", then answers with an `Executed`
of one token per request and reads and decodes the next `Execute` of B decodes. The figure is
the time from the end of the forward to the next step decoded, as the engine's worker idle
time counts it (minus the runner's dispatch).

The forward is a pause, in three modes:
- warm: a busy pause that touches no memory, so the caches stay warm;
- cold: the pause scales `--touch-mb` MB of memory, as a forward streams weights and KV;
- cold, core polling: the same, with the core polling its socket instead of sleeping, so the
  worker's reply wakes nobody.

On a VM, a reply to a process that sleeps pays for waking its CPU; after a forward, the
worker's code and the kernel's socket path run from cold caches. Comparing the modes shows
which of the two the idle time is made of, and `benchmarks/engine_overhead.py`'s `idle_us`
can be read against the cold figure.

Usage: .venv/bin/python benchmarks/worker_idle_floor.py [--steps N] [--touch-mb MB]
The last line is one JSON object: `idle_floor_us`, keyed by mode, then batch size.
"""

import argparse
import json
import multiprocessing
import socket
import statistics
import time

import numpy as np

from engine.wire.framing import FrameEncoder, SocketFrameReader
from engine.wire.step import StepEntry, StepInput, StepOutput
from engine.wire.worker_messages import Executed, Execute, command_decoder, reply_decoder

BATCH_SIZES = (1, 256, 1024)
MODES = ("warm", "cold", "cold, core polling")


def decode_step(step_id: int, batch_size: int) -> StepInput:
    entries = [StepEntry(i, i, 1, 100, True) for i in range(batch_size)]
    return StepInput.from_entries(step_id, entries)


def worker(connection: socket.socket, batch_size: int, steps: int, touch_mb: int, pause_s: float, results) -> None:
    frames = FrameEncoder()
    commands = SocketFrameReader(connection)
    memory = np.ones(touch_mb << 18, dtype=np.float32) if touch_mb else None
    sampled = np.arange(batch_size, dtype="<u4").tobytes()
    idle = []
    assert isinstance(commands.read(command_decoder), Execute)
    for step_id in range(steps):
        if memory is not None:
            memory *= 1.0000001
        else:
            until = time.perf_counter() + pause_s
            while time.perf_counter() < until:
                pass
        end = time.perf_counter()
        connection.sendall(frames.frame(Executed(StepOutput(step_id, sampled, sent_at=end))))
        command = commands.read(command_decoder)
        assert isinstance(command, Execute) and command.step.num_entries == batch_size
        idle.append(time.perf_counter() - end)
    results.put(statistics.median(idle[2:]))


def core(connection: socket.socket, batch_size: int, steps: int, polling: bool) -> None:
    """Keeps one step waiting at the worker: answers each output with the step after next."""
    frames = FrameEncoder()
    payload = bytes(frames.frame(Execute(decode_step(0, batch_size))))
    for _ in range(2):
        connection.sendall(payload)
    connection.setblocking(not polling)
    outputs = SocketFrameReader(connection)
    for _ in range(steps):
        while True:
            try:
                outputs.read(reply_decoder)
                break
            except BlockingIOError:
                continue
        connection.setblocking(True)
        connection.sendall(payload)
        connection.setblocking(not polling)


def measure(mode: str, batch_size: int, steps: int, touch_mb: int, pause_s: float) -> float:
    """`pause_s`: how long the warm pause lasts (as long as the cold one, so only the caches differ)."""
    context = multiprocessing.get_context("spawn")
    core_end, worker_end = socket.socketpair()
    results = context.SimpleQueue()
    cold = mode != "warm"
    process = context.Process(
        target=worker, args=(worker_end, batch_size, steps, touch_mb if cold else 0, pause_s, results)
    )
    process.start()
    worker_end.close()
    core(core_end, batch_size, steps, polling=mode == "cold, core polling")
    idle_s: float = results.get()
    process.join()
    core_end.close()
    return idle_s * 1e6


def touch_duration(touch_mb: int) -> float:
    memory = np.ones(touch_mb << 18, dtype=np.float32)
    started = time.perf_counter()
    for _ in range(5):
        memory *= 1.0000001
    return (time.perf_counter() - started) / 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--touch-mb", type=int, default=64, help="memory a cold pause touches (default 64 MB)")
    args = parser.parse_args()
    if args.steps < 3 or args.touch_mb < 1:
        parser.error("--steps must be at least 3 and --touch-mb at least 1")
    pause_s = touch_duration(args.touch_mb)
    floors = {mode: {b: measure(mode, b, args.steps, args.touch_mb, pause_s) for b in BATCH_SIZES} for mode in MODES}
    print(f"pause per step: {pause_s * 1e3:.2f} ms ({args.touch_mb} MB touched when cold)")
    print(f"{'batch':>6}" + "".join(f" {mode + ' us':>24}" for mode in MODES))
    for batch_size in BATCH_SIZES:
        print(f"{batch_size:>6}" + "".join(f" {floors[mode][batch_size]:>24.1f}" for mode in MODES))
    print(json.dumps({"idle_floor_us": {mode: {str(b): round(v, 1) for b, v in row.items()} for mode, row in floors.items()}}))


if __name__ == "__main__":
    main()
