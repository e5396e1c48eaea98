"""Sarathi-Serve's headline as a benchmark: the capacity (QPS) of `--policy sarathi` and
`--policy vllm` on the same engine and model under a P99 TBT SLO, strict and relaxed, on
arxiv_summarization and sharegpt lengths, and the ratio sarathi / vllm of each.

What it does, in order (one run, nothing taken from an earlier one):
1. Launches `python -m engine --policy vllm` (metron's launcher: own process group, free loopback
   ports, ready at /health, stopped with its group) and measures, one request at a time, the
   decode step at batch size 1 over a full context (the paper's "4k context", scaled like the
   lengths below to the model's context: the median gap of the server's token times) and the
   prefill of prompts of 16, 32, ... tokens alone (metron's prefill profile, median TTFT).
2. The SLOs, as Sarathi-Serve sets them relative to that decode step: P99 TBT at most 5x the
   step (strict) or 25x (relaxed), plus its P50 scheduling delay limit (2 s). TTFT is not limited.
3. The capacity of vllm under both SLOs (one server; a rate's run is scored against both), then of
   sarathi, launched once per SLO with a token budget fitted to it, as the paper fits one per SLO
   by profiling: the largest profiled length whose prefill alone took at most half the SLO (but
   at least max_num_seqs, 32, which the engine requires).
   Both policies get the same model, KV blocks and max_num_seqs; vllm runs whole prompts (its
   token budget is the model's context, as the engine's default).
4. Capacity: metron's expanding binary search (metron.capacity.search_capacity). A probe at rate
   q offers Poisson arrivals at q for a window of `--probe-seconds` (at least 3 requests), its
   lengths drawn from the trace; a probe still running at twice its window plus 10 s is cut and
   fails. Every search starts at the same rate for both policies (what one request at a time
   would sustain, from the measured times) and goes down to an eighth of it at least.

Lengths: each trace's prompt and output lengths are scaled by context / (the trace's longest
request: 4,096 tokens for arxiv_summarization, 8,192 for sharegpt), so the requests keep their
shape (prompt-to-output ratio, spread) and fit the model; the scaled trace is written beside the
runs. `--context` smaller than the model's shrinks everything (and the decode step's context).

Runtime: `--time-limit` (default 840 s; `--quick`: 180 s, 3 probes per search, lengths scaled to
half the context) bounds the whole benchmark: each of the eight searches (policy, workload, SLO)
gets an equal share of the time left when it starts (vllm's two of a workload run together and
share their probes), and a search that runs out of it reports the highest rate that passed so
far, marked.

Usage: .venv/bin/python benchmarks/policy_capacity.py [--quick] [--output-dir DIR]
       [--model DIR --device cuda]        (default: the demo model on the CPU)
The table goes to stdout; the last line is one JSON object.
"""

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import msgspec
import numpy as np

from metron.arrivals import ArrivalConfig
from metron.capacity import CapacityConfig, CapacityStep, search_capacity
from metron.launch import LaunchedServer, free_loopback_ports
from metron.lengths import LengthConfig, request_lengths
from metron.load_generator import LoadConfig
from metron.metrics import RequestRecord
from metron.prefill_model import PrefillModel
from metron.prefill_profile import PrefillProfile, PrefillProfileConfig, run_prefill_profile
from metron.runner import RunConfig, run_benchmark
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize
from metron.targets.engine import EngineTarget, EngineTargetConfig
from metron.workload import WorkloadConfig

TRACES = Path(__file__).resolve().parents[2] / "shared/data/traces"
WORKLOADS = {  # name -> (trace file, its longest request in tokens)
    "arxiv_summarization": ("arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", 4096),
    "sharegpt": ("sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 8192),
}
SLO_MULTIPLES = {"strict": 5.0, "relaxed": 25.0}  # x the batch-1 decode step (Sarathi-Serve)
P50_SCHEDULING_DELAY_S = 2.0  # Sarathi-Serve's capacity criterion
NO_TTFT_LIMIT_S = 1e9
CHUNK_SHARE_OF_SLO = 0.5
MAX_NUM_SEQS = 32
NUM_KV_BLOCKS = 4096
DECODE_TOKENS = 64
DECODE_REQUESTS = 3
WARM_UP_TOKENS = 64
MIN_PROBE_REQUESTS = 3
SEED = 7
POLICIES = ("sarathi", "vllm")
NUM_SEARCHES = len(WORKLOADS) * len(SLO_MULTIPLES) * len(POLICIES)


class TimeUp(Exception):
    """The benchmark's time limit passed."""


def tbt_slos(decode_step_s: float) -> dict[str, float]:
    """The P99 TBT limits, strict and relaxed, from the measured batch-1 decode step."""
    if not (decode_step_s > 0 and math.isfinite(decode_step_s)):
        raise ValueError(f"the decode step must be a positive time, got {decode_step_s}")
    return {name: multiple * decode_step_s for name, multiple in SLO_MULTIPLES.items()}


def token_budget_for(tbt_limit_s: float, prefill_s: Mapping[int, float]) -> int:
    """The largest profiled prompt length whose prefill alone took at most CHUNK_SHARE_OF_SLO of
    the TBT limit, but at least MAX_NUM_SEQS (the engine requires a budget that a full decode
    batch leaves room in)."""
    fitting = [length for length, seconds in prefill_s.items() if seconds <= CHUNK_SHARE_OF_SLO * tbt_limit_s]
    return max([MAX_NUM_SEQS, *fitting])


def slo_config(tbt_limit_s: float) -> SloConfig:
    return SloConfig(
        kind="tbt_ttft",
        p99_tbt_s=tbt_limit_s,
        p90_ttft_s=NO_TTFT_LIMIT_S,
        p50_scheduling_delay_s=P50_SCHEDULING_DELAY_S,
    )


def scale_trace(source: Path, factor: float, destination: Path) -> Path:
    """`source`'s prompt and output lengths times `factor` (rounded, at least 1 token each)."""
    with source.open() as rows, destination.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["num_prefill_tokens", "num_decode_tokens"])
        for row in csv.DictReader(rows):
            writer.writerow(
                [max(1, round(float(row[column]) * factor)) for column in ("num_prefill_tokens", "num_decode_tokens")]
            )
    return destination


def probe_requests(qps: float, probe_seconds: float) -> int:
    return max(MIN_PROBE_REQUESTS, math.ceil(qps * probe_seconds))


class Server(msgspec.Struct, frozen=True):
    rpc_port: int

    def target(self) -> EngineTarget:
        return EngineTarget(EngineTargetConfig(host="127.0.0.1", port=self.rpc_port))


def engine_argv(policy: str, token_budget: int | None, args: argparse.Namespace, port: int, rpc_port: int) -> list[str]:
    """`python -m engine` for one policy: every flag but the policy and its token budget (None:
    the engine's default, the whole context) the same for both."""
    argv = [sys.executable, "-m", "engine", "--model", str(args.model), "--device", args.device]
    argv += ["--port", str(port), "--rpc-port", str(rpc_port), "--policy", policy, "--no-access-log"]
    argv += ["--max-num-seqs", str(MAX_NUM_SEQS), "--num-kv-blocks", str(NUM_KV_BLOCKS)]
    argv += ["--max-model-len", str(args.context)]
    return argv if token_budget is None else [*argv, "--token-budget", str(token_budget)]


@contextmanager
def launched(policy: str, token_budget: int | None, args: argparse.Namespace, directory: Path) -> Iterator[Server]:
    port, rpc_port = free_loopback_ports(2)
    with LaunchedServer(engine_argv(policy, token_budget, args, port, rpc_port), directory / "server.log") as server:
        server.wait_until_healthy(f"http://127.0.0.1:{port}/health", 300.0)
        yield Server(rpc_port=rpc_port)


def warm_up(server: Server, args: argparse.Namespace, directory: Path) -> None:
    """Two short requests, one at a time, so a probe's first iteration is not the process's first."""
    config = _one_at_a_time(args, num_requests=2, prompt_tokens=WARM_UP_TOKENS, output_tokens=8)
    run_benchmark(config, server.target(), directory)


def _one_at_a_time(args: argparse.Namespace, num_requests: int, prompt_tokens: int, output_tokens: int) -> RunConfig:
    return RunConfig(
        workload=WorkloadConfig(
            num_requests=num_requests,
            seed=SEED,
            arrivals=ArrivalConfig(kind="static"),
            lengths=LengthConfig(kind="fixed", prompt_tokens=prompt_tokens, output_tokens=output_tokens),
        ),
        load=LoadConfig(max_concurrency=1),
        tokenizer_path=str(args.model / "tokenizer.json"),
    )


def measure_decode_step(server: Server, args: argparse.Namespace, directory: Path) -> float:
    """The batch-1 decode step over a full context: the median gap between tokens of
    DECODE_REQUESTS requests sent one at a time."""
    config = _one_at_a_time(args, DECODE_REQUESTS, args.context - DECODE_TOKENS, DECODE_TOKENS)
    records = run_benchmark(config, server.target(), directory).records
    gaps = [gap for record in records for gap in _server_gaps(record)]
    if not gaps:
        raise RuntimeError(f"the decode-step requests produced no tokens; see {directory}")
    return float(np.median(gaps))


def measure_prefill(server: Server, args: argparse.Namespace) -> PrefillProfile:
    """TTFT of one-token requests sent one at a time, prompts of 16, 32, ... tokens up to half the
    context (metron's prefill profile): a prefill iteration of that many tokens, alone."""
    lengths = tuple(2**k for k in range(4, int(math.log2(args.context // 2)) + 1))
    tokenizer = str(args.model / "tokenizer.json")
    config = PrefillProfileConfig(prompt_lengths=lengths, samples_per_length=2, tokenizer_path=tokenizer)
    return run_prefill_profile(server.target(), config)


def median_by_length(profile: PrefillProfile) -> dict[int, float]:
    by_length: dict[int, list[float]] = {}
    for length, seconds in zip(profile.prompt_tokens, profile.ttft_s, strict=True):
        by_length.setdefault(length, []).append(seconds)
    return {length: float(np.median(samples)) for length, samples in sorted(by_length.items())}


def _server_gaps(record: RequestRecord) -> list[float]:
    """The gaps between the server's own token times (no network in them), else the client's."""
    times = record.server_token_times_s
    return list(np.diff(times)) if times else list(record.tbt_s)


class Prober:
    """One server and workload: a rate's run happens once and is scored against any SLO."""

    def __init__(self, server: Server, trace: Path, args: argparse.Namespace, root: Path, deadline: float) -> None:
        self.server, self.trace, self.args, self.root, self.deadline = server, trace, args, root, deadline
        self.runs: dict[float, tuple[list[RequestRecord], int]] = {}

    def verdict(self, qps: float, slo: SloConfig) -> CapacityStep:
        if qps not in self.runs:
            self.runs[qps] = self._run(qps)
        records, planned = self.runs[qps]
        verdict = evaluate_slo(summarize(records, slo), slo, num_planned=planned)
        return CapacityStep(qps=qps, passed=verdict.passed, verdict=verdict.describe(), directory=str(self._dir(qps)))

    def _dir(self, qps: float) -> Path:
        return self.root / f"qps_{qps:.6g}"

    def _run(self, qps: float) -> tuple[list[RequestRecord], int]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeUp
        num_requests = probe_requests(qps, self.args.probe_seconds)
        own_bound_s = 2 * num_requests / qps + 10
        config = RunConfig(
            workload=WorkloadConfig(
                num_requests=num_requests,
                seed=SEED,
                arrivals=ArrivalConfig(kind="poisson", rate=qps),
                lengths=LengthConfig(kind="trace", trace_path=str(self.trace), max_total_tokens=self.args.context),
            ),
            load=LoadConfig(max_seconds=max(1.0, min(own_bound_s, remaining))),
            tokenizer_path=str(self.args.model / "tokenizer.json"),
        )
        outcome = run_benchmark(config, self.server.target(), self._dir(qps))
        if outcome.load.cut and remaining < own_bound_s:
            raise TimeUp
        return outcome.records, num_requests


class Capacity(msgspec.Struct, frozen=True):
    qps: float
    converged: bool
    probes: list[CapacityStep]


def capacity(prober: Prober, slo: SloConfig, initial_qps: float, args: argparse.Namespace, label: str) -> Capacity:
    steps: list[CapacityStep] = []

    def evaluate(qps: float) -> CapacityStep:
        step = prober.verdict(qps, slo)
        steps.append(step)
        print(f"  {label} {qps:8.4g} QPS: {step.verdict}", file=sys.stderr, flush=True)
        return step

    search = CapacityConfig(
        initial_qps=initial_qps, granularity=args.granularity, min_qps=initial_qps / 8, max_runs=args.max_probes
    )
    try:
        result = search_capacity(evaluate, search)
    except TimeUp:
        passed = [step.qps for step in steps if step.passed]
        return Capacity(qps=max(passed, default=0.0), converged=False, probes=steps)
    return Capacity(qps=result.capacity_qps, converged=result.converged, probes=steps)


def initial_rate(trace: Path, context: int, decode_step_s: float, prefill: PrefillModel) -> float:
    """Where every search starts, the same for both policies: the rate one request at a time would
    just sustain (mean prefill plus mean decode time of the workload's requests)."""
    lengths = LengthConfig(kind="trace", trace_path=str(trace), max_total_tokens=context)
    prompts, outputs = request_lengths(lengths, 2000, np.random.default_rng(SEED))
    service_s = float(np.mean([prefill.predict_s(p) for p in prompts])) + outputs.mean() * decode_step_s
    return float(f"{1 / service_s:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: the demo model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--context", type=int, help="the lengths are scaled to this (default: the model's context)")
    parser.add_argument(
        "--quick", action="store_true", help="about 3 minutes: half the context, a short time limit, fewer probes"
    )
    parser.add_argument("--time-limit", type=float, metavar="S", help="for everything (default 840 s, quick 180 s)")
    parser.add_argument("--max-probes", type=int, help="runs per capacity search (default 5, quick 3)")
    parser.add_argument("--probe-seconds", type=float, help="arrivals of one probe span this (default: from the limit)")
    parser.add_argument("--granularity", type=float, default=0.1, help="searches stop within this fraction")
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    started = time.monotonic()
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        args.model = default_demo_model_dir()
    if args.context is None:
        model_context = int(json.loads((args.model / "config.json").read_text())["max_position_embeddings"])
        args.context = model_context // 2 if args.quick else model_context
    args.time_limit = args.time_limit or (180.0 if args.quick else 840.0)
    args.max_probes = args.max_probes or (3 if args.quick else 5)
    num_probed = NUM_SEARCHES - len(WORKLOADS)  # vllm's two searches of a workload mostly share probes
    args.probe_seconds = args.probe_seconds or 0.6 * args.time_limit / (num_probed * args.max_probes)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.output_dir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        results = run_all(args, root, deadline=started + args.time_limit)
        results["wall_s"] = round(time.monotonic() - started, 1)
    print_table(results)
    print(json.dumps(results))



def share_of_time(deadline: float, num_searches: int, num_searches_left: int) -> float:
    """The deadline of the next `num_searches` searches (vllm's of one workload run together):
    their share of what is left, so a slow early search cannot starve the later ones."""
    now = time.monotonic()
    return now + max(0.0, deadline - now) * num_searches / num_searches_left


def run_all(args: argparse.Namespace, root: Path, deadline: float) -> dict[str, object]:
    traces = {
        name: scale_trace(TRACES / file, args.context / longest, root / f"{name}_scaled_to_{args.context}.csv")
        for name, (file, longest) in WORKLOADS.items()
    }
    capacities: dict[str, dict[str, dict[str, object]]] = {name: {} for name in WORKLOADS}
    with launched("vllm", None, args, root / "vllm") as server:
        decode_step_s = measure_decode_step(server, args, root / "vllm" / "decode_step")
        profile = measure_prefill(server, args)
        prefill_s = median_by_length(profile)
        limits = tbt_slos(decode_step_s)
        budgets = {slo: token_budget_for(limit, prefill_s) for slo, limit in limits.items()}
        starts = {name: initial_rate(path, args.context, decode_step_s, profile.model) for name, path in traces.items()}
        print(
            f"decode step (batch 1, context {args.context}) {decode_step_s * 1e3:.2f} ms; prefill alone: "
            + ", ".join(f"{length} tokens {seconds * 1e3:.0f} ms" for length, seconds in prefill_s.items())
            + "; P99 TBT SLOs: "
            + ", ".join(f"{slo} {limits[slo] * 1e3:.1f} ms (sarathi token budget {budgets[slo]})" for slo in limits),
            file=sys.stderr,
            flush=True,
        )
        searches_left = NUM_SEARCHES
        for name, trace in traces.items():
            share = share_of_time(deadline, len(limits), searches_left)
            prober = Prober(server, trace, args, root / "vllm" / name, share)
            searches_left -= len(limits)
            for slo, limit in limits.items():
                found = capacity(prober, slo_config(limit), starts[name], args, f"vllm {name} {slo}")
                capacities[name].setdefault(slo, {})["vllm"] = msgspec.to_builtins(found)
    for slo, limit in limits.items():
        directory = root / f"sarathi-{slo}"
        with launched("sarathi", budgets[slo], args, directory) as server:
            warm_up(server, args, directory / "warm_up")
            for name, trace in traces.items():
                prober = Prober(server, trace, args, directory / name, share_of_time(deadline, 1, searches_left))
                searches_left -= 1
                found = capacity(prober, slo_config(limit), starts[name], args, f"sarathi {name} {slo}")
                capacities[name][slo]["sarathi"] = msgspec.to_builtins(found)
    return {
        "model": str(args.model),
        "device": args.device,
        "context": args.context,
        "decode_step_s": decode_step_s,
        "prefill_alone_s": prefill_s,
        "tbt_slo_s": limits,
        "sarathi_token_budget": budgets,
        "initial_qps": starts,
        "probe_seconds": args.probe_seconds,
        "max_probes": args.max_probes,
        "capacity": capacities,
        "ratio": {
            name: {slo: _ratio(by_policy) for slo, by_policy in by_slo.items()} for name, by_slo in capacities.items()
        },
    }


def _ratio(by_policy: Mapping[str, object]) -> float | None:
    sarathi, vllm = (float(by_policy[policy]["qps"]) for policy in POLICIES)  # type: ignore[index]
    return None if vllm == 0 else sarathi / vllm


def print_table(results: Mapping[str, object]) -> None:
    capacities: Mapping[str, Mapping[str, Mapping[str, Mapping[str, object]]]]
    capacities = results["capacity"]  # type: ignore[assignment]
    limits: Mapping[str, float] = results["tbt_slo_s"]  # type: ignore[assignment]
    budgets: Mapping[str, int] = results["sarathi_token_budget"]  # type: ignore[assignment]
    print(
        f"{'workload':<20} {'SLO':<8} {'P99 TBT':>9} {'budget':>6} {'sarathi QPS':>12} {'vllm QPS':>10} "
        f"{'sarathi/vllm':>13}"
    )
    for name, by_slo in capacities.items():
        for slo, by_policy in by_slo.items():
            cells = []
            for policy in POLICIES:
                found = by_policy[policy]
                cells.append(f"{found['qps']:.3g}" + ("" if found["converged"] else "*"))
            ratio = _ratio(by_policy)
            shown = "vllm 0" if ratio is None else f"{ratio:.2f}x"
            print(
                f"{name:<20} {slo:<8} {limits[slo] * 1e3:>7.1f}ms {budgets[slo]:>6} {cells[0]:>12} {cells[1]:>10} "
                f"{shown:>13}"
            )
    print("* not converged (probe or time limit): the highest rate that passed")


if __name__ == "__main__":
    main()
