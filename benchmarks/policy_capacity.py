"""Sarathi-Serve's headline as a benchmark: the capacity (QPS) of `--policy sarathi` and
`--policy vllm` on the same engine and model under a P99 TBT SLO, strict and relaxed, on
arxiv_summarization and sharegpt lengths, and the ratio sarathi / vllm of each.

What it does, in order (one run, nothing taken from an earlier one):
1. Launches `python -m engine --policy vllm` (metron's launcher: own process group, free loopback
   ports, ready at /health, stopped with its group) and measures, one request at a time, the
   decode step at batch size 1 over a full context (the paper's "4k context", scaled like the
   lengths below to the model's context: the median gap of the server's token times) and the
   prefill of prompts of 16, 32, ... tokens alone (metron's prefill profile, median TTFT). The
   decode step is measured again after each workload's searches, and its spread reported.
2. The SLOs, as Sarathi-Serve sets them relative to that first decode step: P99 TBT at most 5x
   the step (strict) or 25x (relaxed), plus its P50 scheduling delay limit (2 s). TTFT is not
   limited. Both policies are scored against the same SLOs.
3. Sarathi's token budget per SLO, fitted as the paper fits one by profiling, but from hybrid
   iterations on the server itself: a sarathi engine with `--iteration-log` serves prompts of
   uniformly drawn lengths four at a time; each logged iteration's period (from the end of the
   one before, or its scheduling, to its outputs) is fitted, by non-negative least squares, as
   base + prefill tokens + chunk-attention pairs (chunk x (context before it + chunk / 2)) +
   decodes + their context tokens (benchmarks/iteration_time.py). The budget is the largest multiple of 16 whose chunk, ending
   at the model's full context (the slowest chunk a prompt has), takes at most half the SLO (but
   at least max_num_seqs, 32, which the engine requires); the other half is left to the decodes
   beside it. Both policies get the same model, KV blocks and max_num_seqs; vllm runs whole
   prompts (its token budget is the model's context, as the engine's default).
4. Capacity: all three servers (vllm, sarathi-strict, sarathi-relaxed) stay up, and each
   workload's four searches (policy x SLO) take turns, one probe each, so a change in the
   machine's load meets every policy alike; vllm's two searches share a probe where they ask for
   the same rate (one run scored against both SLOs). Each search is metron's grid search
   (metron.grid_search): rates on the grid start x 2**(k/4), the same start for every search of a
   workload (what one request at a time would sustain, from the measured times), doubled or
   halved until a pass and a failure bracket the capacity, then bisected to neighbouring rates
   (19% apart), at most `--max-probes` probes. A probe at rate q offers Poisson arrivals at q for
   `--probe-seconds`, but at least `--min-probe-requests` requests (12 pooled 1,400-3,300 gaps
   into a P99 at a 2,048-token context, 700-1,700 at 1,024), with the same seed at the same
   rate for every policy; a probe still running at twice its arrivals' span plus 10 s is cut and
   fails.

Lengths: each trace's prompt and output lengths are scaled by context / (the trace's longest
request: 4,096 tokens for arxiv_summarization, 8,192 for sharegpt), so the requests keep their
shape (prompt-to-output ratio, spread) and fit the model; the scaled trace is written beside the
runs. `--context` smaller than the model's shrinks everything (and the decode step's context).

Runtime: `--time-limit` (default 840 s; `--quick`: 180 s, 3 probes per search, 5 requests per
probe, lengths scaled to half the context) bounds the whole benchmark: each workload's searches
get an equal share of the time left when they start, and a search that runs out of it reports
its bracket so far, marked not converged. The output has each search's capacity (the highest
rate that passed) and the lowest rate that failed above it, so each ratio comes with the range
those brackets allow, and the load average (/proc/loadavg) at the start and the end.

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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import msgspec
import numpy as np

from engine.core.iteration_log import read_iteration_log
from metron.arrivals import ArrivalConfig
from metron.capacity import CapacityStep
from metron.grid_search import GridSearch, GridSearchConfig
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iteration_time import IterationTimeModel, fit_iteration_time  # noqa: E402

TRACES = Path(__file__).resolve().parents[2] / "shared/data/traces"
WORKLOADS = {  # name -> (trace file, its longest request in tokens)
    "arxiv_summarization": ("arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", 4096),
    "sharegpt": ("sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 8192),
}
SLO_MULTIPLES = {"strict": 5.0, "relaxed": 25.0}  # x the batch-1 decode step (Sarathi-Serve)
P50_SCHEDULING_DELAY_S = 2.0  # Sarathi-Serve's capacity criterion
NO_TTFT_LIMIT_S = 1e9
CHUNK_SHARE_OF_SLO = 0.5
BUDGET_MULTIPLE = 16
MAX_NUM_SEQS = 32
NUM_KV_BLOCKS = 4096
DECODE_TOKENS = 64
DECODE_REQUESTS = 3
WARM_UP_TOKENS = 64
CALIBRATION_REQUESTS = 16
CALIBRATION_CONCURRENCY = 4
CALIBRATION_OUTPUT_TOKENS = 16
SEED = 7
POLICIES = ("sarathi", "vllm")
NUM_SERVERS = 1 + len(SLO_MULTIPLES)  # vllm, and sarathi once per SLO's budget


class TimeUp(Exception):
    """The time share of the searches under way passed."""


def tbt_slos(decode_step_s: float) -> dict[str, float]:
    """The P99 TBT limits, strict and relaxed, from the measured batch-1 decode step."""
    if not (decode_step_s > 0 and math.isfinite(decode_step_s)):
        raise ValueError(f"the decode step must be a positive time, got {decode_step_s}")
    return {name: multiple * decode_step_s for name, multiple in SLO_MULTIPLES.items()}


def token_budget_for(tbt_limit_s: float, model: IterationTimeModel, context: int) -> int:
    """The largest multiple of BUDGET_MULTIPLE whose chunk, ending at the full `context`, takes at
    most CHUNK_SHARE_OF_SLO of the TBT limit, but at least MAX_NUM_SEQS (the engine requires a
    budget that a full decode batch leaves room in)."""
    fitting = [
        budget
        for budget in range(BUDGET_MULTIPLE, context + 1, BUDGET_MULTIPLE)
        if model.chunk_s(budget, context - budget) <= CHUNK_SHARE_OF_SLO * tbt_limit_s
    ]
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


def probe_requests(qps: float, probe_seconds: float, min_requests: int) -> int:
    return max(min_requests, math.ceil(qps * probe_seconds))


class Server(msgspec.Struct, frozen=True):
    rpc_port: int

    def target(self) -> EngineTarget:
        return EngineTarget(EngineTargetConfig(host="127.0.0.1", port=self.rpc_port))


def engine_argv(
    policy: str,
    token_budget: int | None,
    args: argparse.Namespace,
    port: int,
    rpc_port: int,
    iteration_log: Path | None = None,
) -> list[str]:
    """`python -m engine` for one policy: every flag but the policy and its token budget (None:
    the engine's default, the whole context) the same for both."""
    argv = [sys.executable, "-m", "engine", "--model", str(args.model), "--device", args.device]
    argv += ["--port", str(port), "--rpc-port", str(rpc_port), "--policy", policy, "--no-access-log"]
    argv += ["--max-num-seqs", str(MAX_NUM_SEQS), "--num-kv-blocks", str(NUM_KV_BLOCKS)]
    argv += ["--max-model-len", str(args.context)]
    if token_budget is not None:
        argv += ["--token-budget", str(token_budget)]
    return argv if iteration_log is None else [*argv, "--iteration-log", str(iteration_log)]


@contextmanager
def launched(
    policy: str, token_budget: int | None, args: argparse.Namespace, directory: Path, iteration_log: Path | None = None
) -> Iterator[Server]:
    directory.mkdir(parents=True, exist_ok=True)
    port, rpc_port = free_loopback_ports(2)
    argv = engine_argv(policy, token_budget, args, port, rpc_port, iteration_log)
    with LaunchedServer(argv, directory / "server.log") as process:
        process.wait_until_healthy(f"http://127.0.0.1:{port}/health", 300.0)
        server = Server(rpc_port=rpc_port)
        warm_up(server, args, directory / "warm_up")
        yield server


def warm_up(server: Server, args: argparse.Namespace, directory: Path) -> None:
    """Two short requests, one at a time, so a probe's first iteration is not the process's first."""
    lengths = LengthConfig(kind="fixed", prompt_tokens=WARM_UP_TOKENS, output_tokens=8)
    run_benchmark(_one_at_a_time(args, 2, lengths), server.target(), directory)


def _one_at_a_time(
    args: argparse.Namespace, num_requests: int, lengths: LengthConfig, concurrency: int = 1
) -> RunConfig:
    return RunConfig(
        workload=WorkloadConfig(
            num_requests=num_requests, seed=SEED, arrivals=ArrivalConfig(kind="static"), lengths=lengths
        ),
        load=LoadConfig(max_concurrency=concurrency),
        tokenizer_path=str(args.model / "tokenizer.json"),
    )


def measure_decode_step(server: Server, args: argparse.Namespace, directory: Path) -> float:
    """The batch-1 decode step over a full context: the median gap between tokens of
    DECODE_REQUESTS requests sent one at a time."""
    lengths = LengthConfig(kind="fixed", prompt_tokens=args.context - DECODE_TOKENS, output_tokens=DECODE_TOKENS)
    records = run_benchmark(_one_at_a_time(args, DECODE_REQUESTS, lengths), server.target(), directory).records
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


def measure_iteration_time(args: argparse.Namespace, directory: Path) -> IterationTimeModel:
    """Hybrid iterations on a sarathi engine (token budget a quarter of the context, so chunks of
    many sizes run after contexts of many lengths beside decodes): CALIBRATION_REQUESTS prompts of
    uniformly drawn lengths, CALIBRATION_CONCURRENCY at a time, fitted from its iteration log."""
    log_path = directory / "iterations.jsonl"
    with launched("sarathi", max(MAX_NUM_SEQS, args.context // 4), args, directory, log_path) as server:
        started_at = time.time()
        lengths = LengthConfig(
            kind="uniform",
            prompt_tokens=args.context - CALIBRATION_OUTPUT_TOKENS,
            min_prompt_tokens=MAX_NUM_SEQS,
            output_tokens=CALIBRATION_OUTPUT_TOKENS,
            min_output_tokens=CALIBRATION_OUTPUT_TOKENS,
        )
        config = _one_at_a_time(args, CALIBRATION_REQUESTS, lengths, concurrency=CALIBRATION_CONCURRENCY)
        run_benchmark(config, server.target(), directory / "calibration")
    _, records = read_iteration_log(log_path)  # the engine flushed it when it stopped
    return fit_iteration_time([record for record in records if record.scheduled_at >= started_at])


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
        cached = qps in self.runs
        if not cached:
            self.runs[qps] = self._run(qps)
        records, planned = self.runs[qps]
        verdict = evaluate_slo(summarize(records, slo), slo, num_planned=planned)
        return CapacityStep(
            qps=qps, passed=verdict.passed, verdict=verdict.describe(), directory=str(self._dir(qps)), cached=cached
        )

    def _dir(self, qps: float) -> Path:
        return self.root / f"qps_{qps:.6g}"

    def _run(self, qps: float) -> tuple[list[RequestRecord], int]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeUp
        num_requests = probe_requests(qps, self.args.probe_seconds, self.args.min_probe_requests)
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


class PolicySearch:
    """One policy's capacity search on one workload under one SLO, probing through `prober`."""

    def __init__(
        self, policy: str, workload: str, slo: str, limit_s: float, prober: Prober, grid: GridSearchConfig
    ) -> None:
        self.policy, self.slo, self.prober = policy, slo, prober
        self.label = f"{policy} {workload} {slo}"
        self.slo_config = slo_config(limit_s)
        self.grid = GridSearch(grid)
        self.probes: list[CapacityStep] = []

    def step(self) -> bool:
        """Probes the next rate; False when the search is done."""
        qps = self.grid.next_qps()
        if qps is None:
            return False
        step = self.prober.verdict(qps, self.slo_config)
        self.grid.record(qps, step.passed)
        self.probes.append(step)
        print(f"  {self.label} {qps:8.4g} QPS: {step.verdict}", file=sys.stderr, flush=True)
        return True

    def result(self) -> dict[str, object]:
        return {
            "qps": self.grid.capacity_qps,
            "failed_qps": self.grid.failed_qps,
            "converged": self.grid.converged,
            "probes": msgspec.to_builtins(self.probes),
        }


def take_turns(searches: Sequence[PolicySearch]) -> None:
    """One probe per search in turn until every search is done or the time share is up."""
    try:
        while any([search.step() for search in searches]):  # a list: every search steps each round
            pass
    except TimeUp:
        return


def initial_rate(trace: Path, context: int, decode_step_s: float, prefill: PrefillModel) -> float:
    """Where every search starts, the same for both policies: the rate one request at a time would
    just sustain (mean prefill plus mean decode time of the workload's requests)."""
    lengths = LengthConfig(kind="trace", trace_path=str(trace), max_total_tokens=context)
    prompts, outputs = request_lengths(lengths, 2000, np.random.default_rng(SEED))
    service_s = float(np.mean([prefill.predict_s(p) for p in prompts])) + outputs.mean() * decode_step_s
    return float(f"{1 / service_s:.3g}")


def load_average() -> str | None:
    path = Path("/proc/loadavg")
    return path.read_text().strip() if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: the demo model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--context", type=int, help="the lengths are scaled to this (default: the model's context)")
    parser.add_argument(
        "--quick", action="store_true", help="about 3 minutes: half the context, a short time limit, fewer probes"
    )
    parser.add_argument("--time-limit", type=float, metavar="S", help="for everything (default 840 s, quick 180 s)")
    parser.add_argument("--max-probes", type=int, help="probes per capacity search (default 6, quick 3)")
    parser.add_argument("--probe-seconds", type=float, help="arrivals of one probe span this (default: from the limit)")
    parser.add_argument("--min-probe-requests", type=int, help="requests per probe at least (default 12, quick 5)")
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    for flag in ("max_probes", "min_probe_requests"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    started = time.monotonic()
    if args.model is None:
        from engine.demo_model import default_demo_model_dir

        args.model = default_demo_model_dir()
    if args.context is None:
        model_context = int(json.loads((args.model / "config.json").read_text())["max_position_embeddings"])
        args.context = model_context // 2 if args.quick else model_context
    args.time_limit = args.time_limit or (180.0 if args.quick else 840.0)
    args.max_probes = args.max_probes or (3 if args.quick else 6)
    args.min_probe_requests = args.min_probe_requests or (5 if args.quick else 12)
    args.probe_seconds = args.probe_seconds or 0.6 * args.time_limit / (len(WORKLOADS) * NUM_SERVERS * args.max_probes)
    load_at_start = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.output_dir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        results = run_all(args, root, deadline=started + args.time_limit)
    results["load_average"] = {"start": load_at_start, "end": load_average()}
    results["wall_s"] = round(time.monotonic() - started, 1)
    print_table(results)
    print(json.dumps(results))


def share_of_time(deadline: float, num_workloads_left: int) -> float:
    """The deadline of the next workload's searches: its share of what is left, so a slow early
    workload cannot starve the later ones."""
    now = time.monotonic()
    return now + max(0.0, deadline - now) / num_workloads_left


def run_all(args: argparse.Namespace, root: Path, deadline: float) -> dict[str, object]:
    traces = {
        name: scale_trace(TRACES / file, args.context / longest, root / f"{name}_scaled_to_{args.context}.csv")
        for name, (file, longest) in WORKLOADS.items()
    }
    capacities: dict[str, dict[str, dict[str, dict[str, object]]]] = {name: {} for name in WORKLOADS}
    with ExitStack() as servers:
        vllm = servers.enter_context(launched("vllm", None, args, root / "vllm"))
        decode_steps_s = [measure_decode_step(vllm, args, root / "vllm" / "decode_step_0")]
        profile = measure_prefill(vllm, args)
        limits = tbt_slos(decode_steps_s[0])
        iteration_time = measure_iteration_time(args, root / "sarathi-calibration")
        budgets = {slo: token_budget_for(limit, iteration_time, args.context) for slo, limit in limits.items()}
        sarathi = {
            slo: servers.enter_context(launched("sarathi", budget, args, root / f"sarathi-{slo}"))
            for slo, budget in budgets.items()
        }
        starts = {
            name: initial_rate(path, args.context, decode_steps_s[0], profile.model) for name, path in traces.items()
        }
        print(
            f"decode step (batch 1, context {args.context}) {decode_steps_s[0] * 1e3:.2f} ms; iteration time fitted "
            f"to {iteration_time.num_iterations} hybrid iterations (median error {iteration_time.median_error:.0%}); "
            + "P99 TBT SLOs: "
            + ", ".join(f"{slo} {limits[slo] * 1e3:.1f} ms (sarathi token budget {budgets[slo]})" for slo in limits),
            file=sys.stderr,
            flush=True,
        )
        for index, (name, trace) in enumerate(traces.items()):
            grid = GridSearchConfig(initial_qps=starts[name], min_qps=starts[name] / 16, max_probes=args.max_probes)
            share = share_of_time(deadline, len(traces) - index)
            vllm_prober = Prober(vllm, trace, args, root / "vllm" / name, share)
            searches = []
            for slo, limit in limits.items():
                sarathi_prober = Prober(sarathi[slo], trace, args, root / f"sarathi-{slo}" / name, share)
                searches.append(PolicySearch("vllm", name, slo, limit, vllm_prober, grid))
                searches.append(PolicySearch("sarathi", name, slo, limit, sarathi_prober, grid))
            take_turns(searches)
            for search in searches:
                capacities[name].setdefault(search.slo, {})[search.policy] = search.result()
            decode_steps_s.append(measure_decode_step(vllm, args, root / "vllm" / f"decode_step_{index + 1}"))
    return {
        "model": str(args.model),
        "device": args.device,
        "context": args.context,
        "decode_step_s": decode_steps_s[0],
        "decode_steps_s": decode_steps_s,
        "decode_step_spread": max(decode_steps_s) / min(decode_steps_s) - 1,
        "prefill_alone_s": median_by_length(profile),
        "iteration_time": msgspec.to_builtins(iteration_time),
        "tbt_slo_s": limits,
        "sarathi_token_budget": budgets,
        "initial_qps": starts,
        "probe_seconds": args.probe_seconds,
        "min_probe_requests": args.min_probe_requests,
        "max_probes": args.max_probes,
        "capacity": capacities,
        "ratio": {
            name: {slo: ratios(by_policy) for slo, by_policy in by_slo.items()} for name, by_slo in capacities.items()
        },
    }


def ratios(by_policy: Mapping[str, Mapping[str, object]]) -> dict[str, float | None]:
    """sarathi / vllm of the capacities, and the range the two brackets allow (from sarathi's
    capacity over vllm's lowest failure to sarathi's lowest failure over vllm's capacity; None
    where a bound is unknown or vllm's capacity is 0)."""
    sarathi, vllm = by_policy["sarathi"], by_policy["vllm"]
    low, high = float(sarathi["qps"]), sarathi["failed_qps"]  # type: ignore[arg-type]
    vllm_low, vllm_high = float(vllm["qps"]), vllm["failed_qps"]  # type: ignore[arg-type]
    return {
        "ratio": low / vllm_low if vllm_low else None,
        "at_least": low / float(vllm_high) if vllm_high else None,  # type: ignore[arg-type]
        "at_most": float(high) / vllm_low if high is not None and vllm_low else None,  # type: ignore[arg-type]
    }


def print_table(results: Mapping[str, object]) -> None:
    capacities: Mapping[str, Mapping[str, Mapping[str, Mapping[str, object]]]]
    capacities = results["capacity"]  # type: ignore[assignment]
    limits: Mapping[str, float] = results["tbt_slo_s"]  # type: ignore[assignment]
    budgets: Mapping[str, int] = results["sarathi_token_budget"]  # type: ignore[assignment]
    steps: list[float] = results["decode_steps_s"]  # type: ignore[assignment]
    print(
        "decode step (batch 1, full context): "
        + ", ".join(f"{step * 1e3:.1f} ms" for step in steps)
        + f" (start, after each workload); load average {results.get('load_average')}"
    )
    print(
        f"{'workload':<20} {'SLO':<8} {'P99 TBT':>9} {'budget':>6} {'sarathi QPS':>16} {'vllm QPS':>16} "
        f"{'sarathi/vllm':>13} {'range':>13}"
    )
    for name, by_slo in capacities.items():
        for slo, by_policy in by_slo.items():
            cells = [_bracket(by_policy[policy]) for policy in POLICIES]
            found = ratios(by_policy)
            shown = "vllm 0" if found["ratio"] is None else f"{found['ratio']:.2f}x"
            span = f"{_bound(found['at_least'])}-{_bound(found['at_most'])}"
            print(
                f"{name:<20} {slo:<8} {limits[slo] * 1e3:>7.1f}ms {budgets[slo]:>6} {cells[0]:>16} {cells[1]:>16} "
                f"{shown:>13} {span:>13}"
            )
    print("QPS: the highest rate that passed [the lowest that failed above it]; * not converged (probes or time)")


def _bracket(found: Mapping[str, object]) -> str:
    failed = found["failed_qps"]
    shown = f"{found['qps']:.3g} [{'-' if failed is None else f'{failed:.3g}'}]"
    return shown + ("" if found["converged"] else "*")


def _bound(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
