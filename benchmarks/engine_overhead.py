"""Engine overhead per iteration at batch 1, 64, 256 and 1,024: the engine's own time outside
the model runner, and how long the worker waits for each step.

Runs the real engine (worker process, scheduler, step messages, streams with detokenizing
readers) on the demo model on CPU. For each batch size B it submits B requests at once
(ignore_eos, so they all decode together) and looks at the decode-only iterations with exactly
B requests: the engine's host time per iteration (applying a step's outputs, scheduling and
sending the next one), the worker's idle time between steps, and the runner's own time. Both
with async scheduling (the default: the next step is sent while the current one runs) and
without.

Usage: .venv/bin/python benchmarks/engine_overhead.py [--model DIR] [--max-tokens N]
The last line is one JSON object: `overhead_us` (host time, async scheduling) and `idle_us`
(worker idle, async scheduling) keyed by batch size, and the same `_sync` without it.
"""

import argparse
import json
import statistics
from pathlib import Path

import trio

from engine.core.engine_core import EngineCore
from engine.core.engine_metrics import EngineMetrics
from engine.core.heap import freeze_startup_heap
from engine.core.request_stream import RequestOutcome
from engine.core.tokenizer import Tokenizer
from engine.executor.worker_group import WorkerGroup, cpu_worker_environment
from engine.scheduler import SchedulerConfig
from engine.wire.runner_config import ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams

BATCH_SIZES = (1, 64, 256, 1024)


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
    results = {}
    async with trio.open_nursery() as nursery:
        # One thread for the worker, so the engine process has the other core of a 2-core machine.
        environment = {**cpu_worker_environment(1), "OMP_NUM_THREADS": "1"}
        workers: WorkerGroup = await nursery.start(WorkerGroup(runner, environment).run)
        engine = EngineCore(scheduler, workers, Tokenizer(model_dir), EngineMetrics("bench"))
        await nursery.start(engine.run)
        freeze_startup_heap()  # as the server does once it is up
        sampling = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
        for batch_size in BATCH_SIZES:
            engine.recent_iterations.clear()
            async with trio.open_nursery() as requests:
                for index in range(batch_size):
                    _, stream = engine.submit([(7 * index + k) % 100 + 1 for k in range(16)], sampling)
                    requests.start_soon(drain, stream)
            # Decode-only steps of the whole batch, past the first two (the pipeline filling).
            decodes = [t for t in engine.recent_iterations if t.batch_size == batch_size == t.num_tokens][2:]
            results[batch_size] = {
                "iterations": len(decodes),
                "runner_ms": statistics.median(t.execute_s for t in decodes) * 1e3,
                "host_us": statistics.median(t.host_s for t in decodes) * 1e6,
                "idle_us": statistics.median(t.idle_s for t in decodes) * 1e6,
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
    print(f"{'batch':>6} {'mode':>6} {'iterations':>11} {'runner ms':>10} {'host us':>9} {'worker idle us':>15}")
    for batch_size in BATCH_SIZES:
        for mode, results in runs.items():
            row = results[batch_size]
            print(f"{batch_size:>6} {mode:>6} {row['iterations']:>11.0f} {row['runner_ms']:>10.3f}"
                  f" {row['host_us']:>9.1f} {row['idle_us']:>15.1f}")
    summary = {
        "overhead_us": {str(b): round(r["host_us"], 1) for b, r in runs["async"].items()},
        "idle_us": {str(b): round(r["idle_us"], 1) for b, r in runs["async"].items()},
        "overhead_us_sync": {str(b): round(r["host_us"], 1) for b, r in runs["sync"].items()},
        "idle_us_sync": {str(b): round(r["idle_us"], 1) for b, r in runs["sync"].items()},
        "runner_ms": {str(b): round(r["runner_ms"], 3) for b, r in runs["async"].items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
