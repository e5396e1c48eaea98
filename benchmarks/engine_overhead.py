"""Engine overhead per iteration: time outside the model runner, at batch 1, 16 and 64.

Runs the real engine (worker process, scheduler, step messages, detokenization, streams) on the
demo model on CPU. For each batch size B it submits B requests at once (ignore_eos, so they all
decode together), then looks at the decode-only iterations with exactly B requests: the total
iteration time, the runner's own time on rank 0 (input preparation, forward, sampling), and the
difference, which is the engine's overhead (scheduling, building the step, inter-process
messages, applying outputs, detokenizing, streaming).

Usage: .venv/bin/python benchmarks/engine_overhead.py [--model DIR] [--max-tokens N]
The last line is one JSON object.
"""

import argparse
import json
import statistics
from pathlib import Path

import trio

from engine.core.engine_core import EngineConfig, EngineCore
from engine.core.engine_metrics import EngineMetrics
from engine.wire.runner_config import ModelRunnerConfig
from engine.core.request_stream import RequestOutcome
from engine.wire.sampling_params import SamplingParams
from engine.core.tokenizer import Tokenizer
from engine.executor.worker_group import CPU_WORKER_ENVIRONMENT, WorkerGroup

BATCH_SIZES = (1, 16, 64)


async def drain(stream: object) -> None:
    async for event in stream:  # type: ignore[attr-defined]
        if isinstance(event, RequestOutcome):
            return


async def measure(model_dir: Path, max_tokens: int) -> dict[int, dict[str, float]]:
    runner = ModelRunnerConfig(model=str(model_dir), device="cpu", num_kv_blocks=4096)
    results = {}
    async with trio.open_nursery() as nursery:
        workers: WorkerGroup = await nursery.start(WorkerGroup(runner, 1, CPU_WORKER_ENVIRONMENT).run)
        config = EngineConfig(chunk_size=2048, max_num_seqs=max(BATCH_SIZES))
        engine = EngineCore(config, workers, Tokenizer(model_dir), EngineMetrics("bench"))
        await nursery.start(engine.run)
        sampling = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0)
        for batch_size in BATCH_SIZES:
            engine.recent_iterations.clear()
            async with trio.open_nursery() as requests:
                for index in range(batch_size):
                    _, stream = engine.submit([(7 * index + k) % 100 + 1 for k in range(16)], sampling)
                    requests.start_soon(drain, stream)
            decodes = [t for t in engine.recent_iterations if t.batch_size == batch_size and t.num_tokens == batch_size]
            total = statistics.median(t.total_s for t in decodes)
            execute = statistics.median(t.execute_s for t in decodes)
            overhead = statistics.median(t.overhead_s for t in decodes)
            results[batch_size] = {
                "iterations": len(decodes),
                "iteration_ms": total * 1e3,
                "runner_ms": execute * 1e3,
                "overhead_ms": overhead * 1e3,
                "overhead_share": overhead / total,
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
    results = trio.run(measure, args.model, args.max_tokens)
    print(f"{'batch':>6} {'iterations':>11} {'iteration ms':>13} {'runner ms':>10} {'overhead ms':>12} {'share':>7}")
    for batch_size, row in results.items():
        print(
            f"{batch_size:>6} {row['iterations']:>11.0f} {row['iteration_ms']:>13.3f} {row['runner_ms']:>10.3f}"
            f" {row['overhead_ms']:>12.3f} {row['overhead_share']:>6.1%}"
        )
    summary = {f"overhead_ms_b{b}": round(r["overhead_ms"], 4) for b, r in results.items()}
    summary |= {f"overhead_share_b{b}": round(r["overhead_share"], 4) for b, r in results.items()}
    summary |= {f"iteration_ms_b{b}": round(r["iteration_ms"], 4) for b, r in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
