"""Engine overhead per iteration at batch 1, 64, 256 and 1,024: the engine core's own time
outside the model runner, and how long the worker waits for each step.

Runs the real engine as `python -m engine` runs it: this process is the front-end (the engine
client, the requests' streams with detokenizing readers), the engine core runs in its own
process and the model worker in another, on the demo model on CPU. For each batch size B it
submits B requests at once (ignore_eos, so they all decode together) and looks at the
decode-only iterations with exactly B requests: the core's host time per iteration (applying a
step's outputs, posting them to the front-end, scheduling and sending the next step), the
worker's idle time between steps, the runner's own time, and the front-end's time to fan one
step's tokens out to the streams. Both with async scheduling (the default: the next step is
sent while the current one runs) and without.

Usage: .venv/bin/python benchmarks/engine_overhead.py [--model DIR] [--max-tokens N]
Host time is wall-clock time, so on a machine whose cores are shared it includes the time the
core's process waited for a core; `core_cpu_us` and `front_end_cpu_us` are the CPU time each
process spent per step over the whole run at that batch size (the kernel's per-thread counts),
which other load does not inflate.

`benchmarks/worker_idle_floor.py` measures the least the worker's idle time can be on the
machine (the same messages between two bare processes), to read `idle_us` against.

The last line is one JSON object: `overhead_us` (host time, async scheduling), `idle_us`
(worker idle, async scheduling), `fan_out_us` (the front-end's time per step), `core_cpu_us`
and `front_end_cpu_us`, keyed by batch size, and `overhead_us_sync` / `idle_us_sync` without
async scheduling.
"""

import argparse
import json
import os
import statistics
from pathlib import Path

import trio

from engine.core.core_process import CoreSpec
from engine.core.iteration_log import scheduler_fields
from engine.executor.worker_group import cpu_worker_environment
from engine.frontend.engine_client import EngineClient
from engine.frontend.engine_metrics import EngineMetrics
from engine.frontend.request_stream import RequestOutcome
from engine.frontend.tokenizer import Tokenizer
from engine.heap import freeze_startup_heap
from engine.scheduler import SchedulerConfig
from engine.wire.runner_config import ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams

BATCH_SIZES = (1, 64, 256, 1024)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process `pid` so far (the kernel's scheduler statistics, in ns)."""
    return sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


async def drain(stream: object) -> None:
    async for event in stream:  # type: ignore[attr-defined]
        if isinstance(event, RequestOutcome):
            return


async def measure(model_dir: Path, max_tokens: int, async_scheduling: bool) -> dict[int, dict[str, float]]:
    largest = max(BATCH_SIZES)
    scheduler = SchedulerConfig(
        token_budget=2048, max_num_seqs=largest, max_model_len=2048, async_scheduling=async_scheduling,
        max_batches_in_flight=2 if async_scheduling else 1,
    )
    runner = ModelRunnerConfig(
        model=str(model_dir), device="cpu", num_kv_blocks=16384, token_budget=2048, max_num_seqs=largest
    )
    # One thread for the worker, so the engine's two processes have the other core of a 2-core machine.
    environment = {**cpu_worker_environment(1), "OMP_NUM_THREADS": "1"}
    spec = CoreSpec(runner=runner, scheduler=scheduler_fields(scheduler), worker_environment=environment)
    results = {}
    async with trio.open_nursery() as nursery:
        client = EngineClient(spec, scheduler, Tokenizer(model_dir), EngineMetrics("bench"))
        engine: EngineClient = await nursery.start(client.run)
        freeze_startup_heap()  # as the server does once it is up
        sampling = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
        for batch_size in BATCH_SIZES:
            engine.recent_iterations.clear()
            engine.recent_deliveries.clear()
            core_cpu, front_end_cpu = cpu_seconds(engine.core_pid), cpu_seconds(os.getpid())
            async with trio.open_nursery() as requests:
                for index in range(batch_size):
                    _, stream = engine.submit([(7 * index + k) % 100 + 1 for k in range(16)], sampling)
                    requests.start_soon(drain, stream)
            core_cpu, front_end_cpu = cpu_seconds(engine.core_pid) - core_cpu, cpu_seconds(os.getpid()) - front_end_cpu
            num_steps = len(engine.recent_iterations)
            # Decode-only steps of the whole batch, past the first two (the pipeline filling).
            decodes = [t for t in engine.recent_iterations if t.batch_size == batch_size == t.num_tokens][2:]
            fan_outs = [d for n, d in engine.recent_deliveries if n == batch_size][2:]
            results[batch_size] = {
                "iterations": len(decodes),
                "runner_ms": statistics.median(t.execute_s for t in decodes) * 1e3,
                "host_us": statistics.median(t.host_s for t in decodes) * 1e6,
                "idle_us": statistics.median(t.idle_s for t in decodes) * 1e6,
                "fan_out_us": statistics.median(fan_outs) * 1e6,
                "core_cpu_us": core_cpu / num_steps * 1e6,
                "front_end_cpu_us": front_end_cpu / num_steps * 1e6,
            }
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: the demo model)")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        args.model = default_demo_model_dir()
    runs = {mode: trio.run(measure, args.model, args.max_tokens, mode == "async") for mode in ("async", "sync")}
    print(f"{'batch':>6} {'mode':>6} {'iterations':>11} {'runner ms':>10} {'host us':>9} {'worker idle us':>15}"
          f" {'fan-out us':>11} {'core cpu us':>12} {'front-end cpu us':>17}")
    for batch_size in BATCH_SIZES:
        for mode, results in runs.items():
            row = results[batch_size]
            print(f"{batch_size:>6} {mode:>6} {row['iterations']:>11.0f} {row['runner_ms']:>10.3f}"
                  f" {row['host_us']:>9.1f} {row['idle_us']:>15.1f} {row['fan_out_us']:>11.1f}"
                  f" {row['core_cpu_us']:>12.1f} {row['front_end_cpu_us']:>17.1f}")
    summary = {
        "overhead_us": {str(b): round(r["host_us"], 1) for b, r in runs["async"].items()},
        "idle_us": {str(b): round(r["idle_us"], 1) for b, r in runs["async"].items()},
        "fan_out_us": {str(b): round(r["fan_out_us"], 1) for b, r in runs["async"].items()},
        "core_cpu_us": {str(b): round(r["core_cpu_us"], 1) for b, r in runs["async"].items()},
        "front_end_cpu_us": {str(b): round(r["front_end_cpu_us"], 1) for b, r in runs["async"].items()},
        "overhead_us_sync": {str(b): round(r["host_us"], 1) for b, r in runs["sync"].items()},
        "idle_us_sync": {str(b): round(r["idle_us"], 1) for b, r in runs["sync"].items()},
        "runner_ms": {str(b): round(r["runner_ms"], 3) for b, r in runs["async"].items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
