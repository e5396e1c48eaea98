"""Replays requests of a production trace through every scheduler policy and shows how each
forms its batches: iterations needed, tokens per iteration, decode stalls, preemptions.

No model runs: each iteration is one schedule + update with dummy tokens, so the figures are
batching decisions only (the simulator turns them into time). Trace: ../shared/data/traces/.

Usage: .venv/bin/python scripts/scheduler_demo.py [TRACE_CSV] [--requests N]
"""

import argparse
import csv
import time
from pathlib import Path

from engine.scheduler import POLICIES, Scheduler, SchedulerConfig

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared/data/traces/splitwise_conv.csv"


def load(path: Path, limit: int) -> list[tuple[int, int]]:
    with path.open() as file:
        rows = list(csv.DictReader(file))[:limit]
    return [(int(row["num_prefill_tokens"]), int(row["num_decode_tokens"])) for row in rows]


def replay(policy: str, requests: list[tuple[int, int]]) -> dict[str, float]:
    config = SchedulerConfig(
        policy=policy,
        token_budget=512 if policy == "sarathi" else 8192,
        max_num_seqs=128,
        max_model_len=8192,
        block_size=16,
        num_blocks=8192,
    )
    scheduler = Scheduler(config)
    for request_id, (prompt, output) in enumerate(requests):
        scheduler.add_request(request_id, prompt_len=min(prompt, 8192), max_new_tokens=max(output, 1))
    iterations = stalls = preemptions = tokens = 0
    start = time.perf_counter()
    while len(scheduler):
        decoding = {i for i in scheduler.running_ids() if not scheduler.request_state(i).is_prefill}
        batch = scheduler.schedule(0.0)
        scheduled = set(batch.request_ids)
        stalls += bool(decoding - scheduled - set(batch.preempted_ids))
        preemptions += len(batch.preempted_ids)
        tokens += batch.num_tokens
        iterations += 1
        scheduler.update(batch, [0] * batch.num_producing)
    return dict(
        iterations=iterations,
        tokens_per_iteration=tokens / iterations,
        stalled_iterations=stalls,
        preemptions=preemptions,
        wall_ms=(time.perf_counter() - start) * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", nargs="?", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    requests = load(args.trace, args.requests)
    print(f"{len(requests)} requests from {args.trace.name}, all queued at once; 8192 KV blocks of 16 tokens\n")
    print(f"{'policy':<20}{'iterations':>11}{'tokens/iter':>13}{'decode stalls':>15}{'preemptions':>13}{'wall ms':>9}")
    for policy in POLICIES:
        r = replay(policy, requests)
        print(
            f"{policy:<20}{r['iterations']:>11}{r['tokens_per_iteration']:>13.1f}"
            f"{r['stalled_iterations']:>15}{r['preemptions']:>13}{r['wall_ms']:>9.0f}"
        )
    print("\ndecode stalls: iterations in which a running decode was left out (sarathi never does this)")


if __name__ == "__main__":
    main()
