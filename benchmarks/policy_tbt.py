"""P99 TBT (and P50 TTFT) against request rate for `--policy sarathi` and `--policy vllm` on the
same engine, model and trace: the stall-free effect Sarathi-Serve reports.

Starts `python -m engine` once per policy and drives it with metron (engine target: server
timestamps, open-loop Poisson arrivals, prompt and output lengths from a production trace,
clipped to the model's context). Under `vllm` a new prompt's whole prefill runs alone while every
running decode waits; under `sarathi` prefills are chunked beside the decodes.

Usage: .venv/bin/python benchmarks/policy_tbt.py [--model DIR --device cuda] [--rates 2,4,8]
Default: the demo model on CPU. The last line is one JSON object.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from metron.arrivals import ArrivalConfig  # noqa: E402
from metron.lengths import LengthConfig  # noqa: E402
from metron.runner import RunConfig, run_benchmark  # noqa: E402
from metron.targets.engine import EngineTarget, EngineTargetConfig  # noqa: E402
from metron.workload import WorkloadConfig  # noqa: E402
from support.engine_server import start_server  # noqa: E402

TRACE = Path(__file__).resolve().parents[2] / "shared/data/traces/splitwise_conv.csv"


def measure(model: Path, policy: str, rates: list[float], args: argparse.Namespace) -> dict[float, dict[str, float]]:
    options = ["--policy", policy, "--device", args.device, "--max-num-seqs", "64"]
    if policy == "sarathi":
        options += ["--token-budget", str(args.token_budget)]
    if args.device == "cpu":
        options += ["--num-kv-blocks", "4096"]
    server = start_server(model, *options, name="bench")
    results = {}
    try:
        for rate in rates:
            config = RunConfig(
                workload=WorkloadConfig(
                    num_requests=args.requests,
                    num_warmup_requests=4,
                    seed=1,
                    arrivals=ArrivalConfig(kind="poisson", rate=rate),
                    lengths=LengthConfig(kind="trace", trace_path=str(TRACE), max_total_tokens=args.max_total_tokens),
                ),
                tokenizer_path=str(model / "tokenizer.json"),
            )
            target = EngineTarget(EngineTargetConfig(host=server.host, port=server.rpc_port))
            with tempfile.TemporaryDirectory() as directory:
                outcome = run_benchmark(config, target, directory)
            metrics = outcome.metrics
            results[rate] = {
                key: float(metrics[key])  # type: ignore[arg-type]
                for key in ("tbt_s.p99", "tbt_s.p50", "ttft_s.p50", "ttft_s.p99", "output_token_throughput_per_s")
            }
            print(f"{policy:>8} {rate:>6.1f} QPS  P99 TBT {metrics['tbt_s.p99']:.4f} s  P50 TTFT {metrics['ttft_s.p50']:.4f} s",
                  file=sys.stderr, flush=True)
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: the demo model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rates", default="2,4,8", help="request rates (QPS), comma-separated")
    parser.add_argument("--requests", type=int, default=60, help="measured requests per rate")
    parser.add_argument("--token-budget", type=int, default=256, help="sarathi's token budget")
    parser.add_argument("--max-total-tokens", type=int, default=1536, help="clip prompt + output to this")
    args = parser.parse_args()
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        args.model = default_demo_model_dir()
    rates = [float(rate) for rate in args.rates.split(",")]
    results = {policy: measure(args.model, policy, rates, args) for policy in ("sarathi", "vllm")}
    print(f"{'QPS':>6} {'sarathi P99 TBT':>16} {'vllm P99 TBT':>13} {'vllm/sarathi':>13} {'sarathi P50 TTFT':>17} {'vllm P50 TTFT':>14}")
    for rate in rates:
        s, v = results["sarathi"][rate], results["vllm"][rate]
        print(
            f"{rate:>6.1f} {s['tbt_s.p99']:>16.4f} {v['tbt_s.p99']:>13.4f} {v['tbt_s.p99'] / s['tbt_s.p99']:>12.2f}x"
            f" {s['ttft_s.p50']:>17.4f} {v['ttft_s.p50']:>14.4f}"
        )
    print(json.dumps({policy: {str(rate): row for rate, row in by_rate.items()} for policy, by_rate in results.items()}))


if __name__ == "__main__":
    main()
