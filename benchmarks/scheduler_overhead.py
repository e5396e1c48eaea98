"""Microseconds per scheduler iteration (schedule + update) in steady state.

For N running requests under `sarathi` with 10,000 waiting (prompts of 128 tokens, 64..512
output tokens, finished requests queued again so the load stays put), measured three ways in
one run: the Rust core (cargo bench), the same Rust code through the Python binding, the
binding with the batch read as the engine reads it (its columns, new requests, preemptions and
finished ids; tokens handed back as bytes), and a plain-Python implementation of the policy
(benchmarks/baseline_sarathi.py).

Usage: .venv/bin/python benchmarks/scheduler_overhead.py
The last line is one JSON object; the `*_us` keys are medians at 1,024 running requests.
"""

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.scheduler import Scheduler, SchedulerConfig, TokenLedger

sys.path.insert(0, str(Path(__file__).parent))
from baseline_sarathi import PythonSarathiScheduler  # noqa: E402

NUM_WAITING = 10_000
PROMPT_LEN = 128
WARMUP = 2 * PROMPT_LEN + 200
SIZES = {64: (4000, 2000), 256: (2000, 800), 1024: (800, 200), 4096: (200, 60)}


class XorShift:
    """The Rust bench's generator, so both measure the same request mix."""

    def __init__(self) -> None:
        self.state = 0x9E3779B97F4A7C15

    def output_len(self) -> int:
        mask = (1 << 64) - 1
        self.state ^= (self.state << 13) & mask
        self.state ^= self.state >> 7
        self.state ^= (self.state << 17) & mask
        return 64 + self.state % 449


def knobs(num_running: int) -> dict[str, int]:
    return dict(
        token_budget=2 * num_running + 512,
        max_num_seqs=num_running,
        block_size=16,
        num_blocks=num_running * 48 + 1024,
    )


def time_loop(
    add: Callable[[int, int], None], iterate: Callable[[], list[int]], num_running: int, iterations: int
) -> list[float]:
    rng = XorShift()
    next_id = 0
    for _ in range(num_running + NUM_WAITING):
        add(next_id, rng.output_len())
        next_id += 1
    timings = []
    for iteration in range(WARMUP + iterations):
        start = time.perf_counter_ns()
        finished = iterate()
        elapsed = time.perf_counter_ns() - start
        if iteration >= WARMUP:
            timings.append(elapsed / 1000)
        for _ in finished:
            add(next_id, rng.output_len())
            next_id += 1
    return timings


def binding_us(num_running: int, iterations: int) -> list[float]:
    scheduler = Scheduler(SchedulerConfig(policy="sarathi", max_model_len=4096, **knobs(num_running)))
    tokens = [7] * (2 * num_running + 512)

    def add(request_id: int, output_len: int) -> None:
        scheduler.add_request(request_id, prompt_len=PROMPT_LEN, max_new_tokens=output_len)

    def iterate() -> list[int]:
        batch = scheduler.schedule(0.0)
        return [f.id for f in scheduler.update(batch, tokens[: batch.num_producing])]

    return time_loop(add, iterate, num_running, iterations)


def engine_visible_us(num_running: int, iterations: int) -> list[float]:
    """The binding with the batch read as the engine core reads it: its columns and membership
    lists (what the step sends), the new requests' slots taken in a `TokenLedger`, and the
    sampled tokens handed back as bytes through `TokenLedger.apply`, which records them and
    updates the scheduler."""
    scheduler = Scheduler(SchedulerConfig(policy="sarathi", max_model_len=4096, **knobs(num_running)))
    ledger = TokenLedger([2], 32000)
    tokens = np.full(2 * num_running + 512, 7, dtype="<u4").tobytes()

    def add(request_id: int, output_len: int) -> None:
        scheduler.add_request(request_id, prompt_len=PROMPT_LEN, max_new_tokens=output_len)

    def iterate() -> list[int]:
        batch = scheduler.schedule(0.0)
        _ = batch.columns()
        new_request_ids, _, _, _ = batch.membership()
        if new_request_ids:
            for slot, request_id in zip(batch.new_request_slots, new_request_ids, strict=True):
                ledger.take(slot, request_id, 0.0)
        recorded = ledger.apply(scheduler, batch, tokens[: 4 * batch.num_producing], 0.0, set())
        for finished in recorded.finished:
            ledger.release(finished.slot, finished.id)
        return [f.id for f in recorded.finished]

    return time_loop(add, iterate, num_running, iterations)


def baseline_us(num_running: int, iterations: int) -> list[float]:
    scheduler = PythonSarathiScheduler(watermark=0.01, **knobs(num_running))
    tokens = [7] * (2 * num_running + 512)

    def iterate() -> list[int]:
        batch, _ = scheduler.schedule()
        num_producing = sum(1 for s in batch if s.produces_token)
        return scheduler.update(batch, tokens[:num_producing])

    return time_loop(lambda i, n: scheduler.add_request(i, PROMPT_LEN, n), iterate, num_running, iterations)


def rust_us() -> dict[int, dict[str, float]]:
    root = Path(__file__).resolve().parent.parent
    command = ["cargo", "bench", "--quiet", "-p", "scheduler", "--bench", "schedule_loop"]
    output = subprocess.run(command, cwd=root, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {row["num_running"]: row for row in rows}


def main() -> None:
    rust = rust_us()
    print(f"{'running':>8} {'rust p50':>10} {'binding p50':>12} {'engine-visible p50':>19} {'python p50':>11}"
          f" {'binding mean':>13} {'python/binding':>15}")
    results = {}
    for num_running, (binding_iterations, baseline_iterations) in SIZES.items():
        binding = binding_us(num_running, binding_iterations)
        visible = engine_visible_us(num_running, binding_iterations)
        baseline = baseline_us(num_running, baseline_iterations)
        row = {
            "rust_us": round(rust[num_running]["median_us"], 2),
            "python_us": round(statistics.median(binding), 2),
            "engine_visible_us": round(statistics.median(visible), 2),
            "baseline_python_us": round(statistics.median(baseline), 2),
        }
        results[num_running] = row
        print(
            f"{num_running:>8} {row['rust_us']:>10.1f} {row['python_us']:>12.1f} {row['engine_visible_us']:>19.1f}"
            f" {row['baseline_python_us']:>11.1f} {statistics.fmean(binding):>13.1f}"
            f" {row['baseline_python_us'] / row['python_us']:>14.1f}x"
        )
    per_request = {n: round(r["python_us"] / n * 1000, 1) for n, r in results.items()}
    print(f"binding ns per running request: {per_request}")
    summary = dict(results[1024], num_running=1024, by_num_running={str(n): r for n, r in results.items()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
