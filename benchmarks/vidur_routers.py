"""The four routers on multi-turn sessions, simulated: prefix cache hit rate, TTFT P50/P99,
throughput.

Llama-2-7B on 4 replicas of one H100 each, `sarathi` (chunk 512), prefix caching on, metron's
workload generators: sessions of 4 turns (Poisson session arrivals, each later turn sent 5 s
after the turn before ended, its prompt the conversation so far and a new message of 50-400
tokens, answers of 50-300 tokens), first without a system prompt, then with a shared 1,000-token
one. Without the cache (`round_robin`, the cache off) as the baseline. Each run is one
simulation; the table is what the README shows.

Usage: .venv/bin/python benchmarks/vidur_routers.py [--data-dir DIR] [--sessions N] [--rate R]
The last line is one JSON object: per workload and router, the figures of the table.
"""

import argparse
import dataclasses
import json
from pathlib import Path

from metron.arrivals import ArrivalConfig
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig
from metron.sessions import SessionConfig
from metron.summary import Metrics
from metron.workload import WorkloadConfig

from vidur import ClusterConfig, DeploymentConfig, Simulator, plan_deployment, score, train_predictor, workload_for
from vidur.config import default_profiling_roots
from vidur.deployment import ROUTERS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TURNS = 4
FIGURES = (
    "cached_prompt_fraction",
    "ttft_s.p50",
    "ttft_s.p99",
    "request_throughput_per_s",
    "output_token_throughput_per_s",
)


def workload(num_sessions: int, rate: float, shared_prefix_tokens: int) -> WorkloadConfig:
    return WorkloadConfig(
        num_requests=num_sessions * TURNS,
        seed=0,
        arrivals=ArrivalConfig(kind="poisson", rate=rate),
        lengths=LengthConfig(
            kind="uniform", min_prompt_tokens=50, prompt_tokens=400, min_output_tokens=50, output_tokens=300
        ),
        shared_prefix_tokens=shared_prefix_tokens,
        sessions=SessionConfig(num_turns=TURNS, think_time_s=5.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8.0, help="sessions per second")
    args = parser.parse_args()
    predictor = train_predictor(default_profiling_roots(args.data_dir))
    base = DeploymentConfig()
    runs = [(router, True) for router in ROUTERS] + [("round_robin", False)]
    figures: dict[str, dict[str, Metrics]] = {}
    print(
        "| workload | router | prefix cache | hit rate | TTFT P50 (s) | TTFT P99 (s) | requests/s | output tokens/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for prefix in (0, 1000):
        name = f"{args.sessions} sessions x {TURNS} turns" + (f", {prefix}-token system prompt" if prefix else "")
        figures[name] = {}
        for router, caching in runs:
            config = dataclasses.replace(
                base,
                scheduler=dataclasses.replace(base.scheduler, enable_prefix_caching=caching),
                cluster=ClusterConfig(num_replicas=4, router=router),
            )
            simulator = Simulator(plan_deployment(config, predictor))
            result = simulator.run(workload_for(workload(args.sessions, args.rate, prefix), simulator.deployment))
            metrics = score(result, DeadlineConfig()).metrics
            row = {key: metrics[key] for key in FIGURES}
            figures[name][router if caching else f"{router} (no cache)"] = row
            hit = "-" if row["cached_prompt_fraction"] is None else f"{row['cached_prompt_fraction']:.3f}"
            print(
                f"| {name} | `{router}` | {'on' if caching else 'off'} | {hit} | {row['ttft_s.p50']:.3f} | "
                f"{row['ttft_s.p99']:.3f} | {row['request_throughput_per_s']:.2f} | "
                f"{row['output_token_throughput_per_s']:.0f} |",
                flush=True,
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
