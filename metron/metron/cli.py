"""`metron`: run, benchmark, capacity, profile-prefill, report, compare. The only place that
reads the environment (the API key, SERVEKIT_DATA) and turns errors into exit codes:
0 done, 2 bad arguments or input, 3 target unreachable or refusing, 130 interrupted (what was
measured is written first)."""

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec

from metron.arrivals import ARRIVAL_KINDS, ArrivalConfig
from metron.benchmark_command import add_profile_arguments, command_benchmark, profile_config
from metron.deadlines import DeadlineConfig
from metron.launch_capacity import add_launch_arguments
from metron.lengths import CLIP_RULES, LENGTH_KINDS, LengthConfig
from metron.load_generator import LoadConfig
from metron.prefill_profile import read_prefill_model
from metron.prompts import load_tokenizer
from metron.runner import RunConfig
from metron.sessions import SessionConfig
from metron.slo import SLO_KINDS, SloConfig
from metron.targets.base import Target, TargetError
from metron.targets.openai import ENDPOINTS, OpenAIConfig, OpenAITarget
from metron.metrics import RequestRecord, RequestTimes
from metron.workload import WorkloadConfig, generate_workload

EXIT_BAD_INPUT = 2
EXIT_TARGET = 3
EXIT_INTERRUPTED = 130


TARGETS = ("openai", "engine", "vidur")


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target")
    group.add_argument(
        "--target",
        choices=TARGETS,
        default="openai",
        help="openai: any OpenAI-compatible URL; engine: this project's engine over its msgspec socket; "
        "vidur: a simulated deployment",
    )
    group.add_argument("--url", help="openai: base URL, e.g. http://127.0.0.1:8000 (with or without /v1)")
    group.add_argument("--model", help="openai: model name the server serves")
    group.add_argument("--endpoint", choices=ENDPOINTS, default="completions")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (openai and engine targets)")
    group.add_argument("--tokenizer", help="the model's tokenizer.json: exact prompt lengths, token counting")
    group.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos (strict OpenAI APIs)")
    group.add_argument("--no-continuous-usage", action="store_true", help="do not ask for usage in every event")
    group.add_argument("--no-usage", action="store_true", help="do not ask for usage at all (stream_options)")
    group.add_argument("--logprobs", action="store_true", help="ask for logprobs to count tokens per event")
    group.add_argument("--extra-body", default="{}", help="JSON object merged into every request body")
    group.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    group.add_argument("--engine", default="127.0.0.1:8001", metavar="HOST:PORT", help="engine: its RPC address")
    group.add_argument("--vidur-config", help="vidur: the deployment's config file (TOML or YAML)")
    group.add_argument(
        "--vidur-set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="vidur: config overrides"
    )
    group.add_argument("--data-dir", help="vidur: holds traces/ and profiling/ (default: $SERVEKIT_DATA or ../shared/data)")


def _workload_arguments(parser: argparse.ArgumentParser, with_rate: bool = True) -> None:
    group = parser.add_argument_group("workload")
    group.add_argument("--num-requests", type=int, help="measured requests (default 100; with --sessions: K x --turns)")
    group.add_argument("--warmup-requests", type=int, default=0, help="extra requests first, left out of figures")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--arrivals", choices=ARRIVAL_KINDS, default="poisson")
    if with_rate:
        group.add_argument("--rate", type=float, default=1.0, help="requests/s (poisson, gamma)")
    group.add_argument("--cv", type=float, default=1.0, help="gamma: coefficient of variation of the gaps")
    group.add_argument("--arrival-trace", help="CSV with an arrived_at column (trace arrivals)")
    group.add_argument("--rate-scale", type=float, default=1.0, help="trace arrivals: replay this many times faster")
    group.add_argument("--lengths", choices=LENGTH_KINDS, default="fixed")
    group.add_argument("--prompt-tokens", type=int, default=512, help="fixed value, or the maximum")
    group.add_argument("--output-tokens", type=int, default=128, help="fixed value, or the maximum")
    group.add_argument("--min-prompt-tokens", type=int, default=1)
    group.add_argument("--min-output-tokens", type=int, default=1)
    group.add_argument("--zipf-theta", type=float, default=1.1)
    group.add_argument("--length-trace", help="CSV with num_prefill_tokens and num_decode_tokens columns")
    group.add_argument("--in-order", action="store_true", help="trace lengths in file order, not shuffled")
    group.add_argument("--max-total-tokens", type=int, help="clip prompt + output to this (the model's context)")
    group.add_argument(
        "--clip",
        choices=CLIP_RULES,
        default=LengthConfig().clip,
        help="what a request longer than --max-total-tokens keeps whole: its output (Vidur's rule) or its prompt",
    )
    group = parser.add_argument_group("shared prefixes")
    group.add_argument(
        "--shared-prefix-tokens", type=int, default=0, metavar="N", help="one system prompt of N tokens before every prompt"
    )
    group.add_argument("--sessions", type=int, metavar="K", help="K multi-turn sessions of --turns requests each")
    group.add_argument("--turns", type=int, default=1, metavar="T", help="requests per session, each continuing the last")
    group.add_argument("--think-time", type=float, default=0.0, metavar="S", help="from a turn's answer to the next turn")
    group.add_argument(
        "--prompts-file", type=Path, metavar="PATH", help="JSONL of prompts, chat messages or ShareGPT conversations"
    )


def _scoring_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("deadlines and SLO")
    group.add_argument("--tbt-deadline", type=float, default=0.1, metavar="S", help="D_d (default 0.1 s)")
    group.add_argument("--ttft-deadline", type=float, default=2.0, metavar="S", help="D_p without a prefill profile")
    group.add_argument("--prefill-profile", help="profile-prefill output: D_p = predicted prefill + --ttft-slack")
    group.add_argument("--ttft-slack", type=float, default=0.3, metavar="S")
    group.add_argument(
        "--fluid-miss-rate",
        type=float,
        default=DeadlineConfig().target_miss_rate,
        help="the miss rate a request may have and still count as fluid (minimum TBT deadline, fluid token rate)",
    )
    group.add_argument("--slo", choices=SLO_KINDS, default="deadline")
    slo = SloConfig()
    group.add_argument("--max-miss-rate", type=float, default=slo.max_miss_rate, help="deadline SLO: miss rate limit")
    group.add_argument("--p99-tbt", type=float, default=slo.p99_tbt_s, metavar="S", help="tbt_ttft SLO: TBT limit")
    group.add_argument("--p90-ttft", type=float, default=slo.p90_ttft_s, metavar="S", help="tbt_ttft, ttft_tpot SLOs: TTFT limit")
    group.add_argument("--p90-tpot", type=float, default=slo.p90_tpot_s, metavar="S", help="ttft_tpot SLO: TPOT limit")
    group.add_argument("--p50-scheduling-delay", type=float, metavar="S", help="also require this (engine targets)")
    group.add_argument("--max-error-rate", type=float, default=0.01)
    for name, limit in (
        ("miss_rate", "--max-miss-rate"),
        ("tbt", "--p99-tbt"),
        ("ttft", "--p90-ttft"),
        ("tpot", "--p90-tpot"),
        ("scheduling_delay", "--p50-scheduling-delay"),
    ):
        default = getattr(slo, f"{name}_percentile")
        group.add_argument(
            f"--{name.replace('_', '-')}-percentile",
            type=float,
            default=default,
            metavar="Q",
            help=f"the percentile {limit} bounds (default {default:g})",
        )
    group = parser.add_argument_group("load")
    group.add_argument("--max-concurrency", type=int, help="closed loop: at most this many in flight")
    group.add_argument("--max-seconds", type=float, metavar="S", help="stop a run this long after it starts")
    group.add_argument("--request-timeout", type=float, default=600.0, metavar="S")


def _output_arguments(
    parser: argparse.ArgumentParser, output_dir_help: str = "a new or empty directory (see --overwrite)"
) -> None:
    parser.add_argument("--output-dir", required=True, type=Path, help=output_dir_help)
    parser.add_argument("--overwrite", action="store_true", help="write into an output directory that holds files")
    parser.add_argument("--no-progress", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metron", description="Benchmark LLM serving by what users feel.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="one open-loop run; writes requests.jsonl, summary.json, CSVs, report")
    _target_arguments(run)
    _workload_arguments(run)
    _scoring_arguments(run)
    _output_arguments(run)

    benchmark = commands.add_parser(
        "benchmark", help="a load profile (GuideLLM's): a run directory per level, sweep.json, sweep.md, plots"
    )
    _target_arguments(benchmark)
    _workload_arguments(benchmark)
    _scoring_arguments(benchmark)
    add_profile_arguments(benchmark)
    _output_arguments(benchmark)

    capacity = commands.add_parser("capacity", help="the highest QPS meeting the SLO (expanding binary search)")
    _target_arguments(capacity)
    _workload_arguments(capacity, with_rate=False)
    _scoring_arguments(capacity)
    capacity.add_argument("--initial-qps", type=float, default=1.0)
    capacity.add_argument("--granularity", type=float, default=0.05, help="stop within this fraction of the bound")
    capacity.add_argument("--min-qps", type=float, default=0.01)
    capacity.add_argument("--max-runs", type=int, default=16)
    _output_arguments(capacity, output_dir_help="new, empty, or an earlier search's (its runs are reused)")
    add_launch_arguments(capacity)

    profile = commands.add_parser("profile-prefill", help="TTFT against prompt length at concurrency 1, fitted")
    _target_arguments(profile)
    profile.add_argument("--prompt-lengths", default="128,256,512,1024,2048,4096", help="comma-separated")
    profile.add_argument("--samples", type=int, default=3, help="samples per length")
    profile.add_argument("--output", required=True, type=Path, help="JSON file for the profile")

    report = commands.add_parser("report", help="(re)write report.md and plots of a run directory")
    report.add_argument("run_dir", type=Path)

    compare = commands.add_parser("compare", help="two run directories side by side")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--output-dir", type=Path, help="also write comparison.md and plots here")
    return parser


def _target(args: argparse.Namespace, config: RunConfig | None) -> Target:
    """`config` is the run's (the simulated target needs its workload); None outside runs."""
    match args.target:
        case "engine":
            from metron.targets.engine import EngineTarget, EngineTargetConfig, parse_address

            host, port = parse_address(args.engine)
            return EngineTarget(
                EngineTargetConfig(host=host, port=port, ignore_eos=not args.no_ignore_eos),
                api_key=os.environ.get(args.api_key_env) or None,
            )
        case "vidur":
            from metron.targets.vidur import VidurTarget

            if config is None:
                raise ValueError("the vidur target simulates a workload: use it with run or capacity")
            if config.prompts_path is not None:
                raise ValueError("the vidur target does not simulate a --prompts-file yet")
            requests = generate_workload(config.workload)
            data_dir = _data_dir(args.data_dir)
            shared = config.workload.shared_prefix_tokens
            return VidurTarget.from_config(args.vidur_config, args.vidur_set, data_dir, requests, shared)
    if not args.url or not args.model:
        raise ValueError("the openai target needs --url and --model")
    try:
        extra_body = json.loads(args.extra_body)
    except json.JSONDecodeError as error:
        raise ValueError(f"--extra-body is not JSON: {error}") from error
    if not isinstance(extra_body, dict):
        raise ValueError("--extra-body must be a JSON object")
    openai = OpenAIConfig(
        url=args.url,
        model=args.model,
        endpoint=args.endpoint,
        ignore_eos=not args.no_ignore_eos,
        include_usage=not args.no_usage,
        continuous_usage=not (args.no_continuous_usage or args.no_usage),
        logprobs=args.logprobs,
        extra_body=extra_body,
        connect_timeout_s=args.connect_timeout,
    )
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    return OpenAITarget(openai, api_key=os.environ.get(args.api_key_env) or None, tokenizer=tokenizer)


def _data_dir(argument: str | None) -> Path:
    """The CLI is the one place that reads the environment."""
    if argument:
        return Path(argument)
    if os.environ.get("SERVEKIT_DATA"):
        return Path(os.environ["SERVEKIT_DATA"])
    return Path("../shared/data")


def _run_config(args: argparse.Namespace, rate: float = 1.0) -> RunConfig:
    arrivals = ArrivalConfig(
        kind=args.arrivals,
        rate=getattr(args, "rate", rate),
        cv=args.cv,
        trace_path=args.arrival_trace,
        rate_scale=args.rate_scale,
    )
    lengths = LengthConfig(
        kind=args.lengths,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        min_prompt_tokens=args.min_prompt_tokens,
        min_output_tokens=args.min_output_tokens,
        zipf_theta=args.zipf_theta,
        trace_path=args.length_trace,
        shuffle=not args.in_order,
        max_total_tokens=args.max_total_tokens,
        clip=args.clip,
    )
    workload = WorkloadConfig(
        num_requests=_num_requests(args),
        num_warmup_requests=args.warmup_requests,
        seed=args.seed,
        arrivals=arrivals,
        lengths=lengths,
        shared_prefix_tokens=args.shared_prefix_tokens,
        sessions=SessionConfig(num_turns=args.turns, think_time_s=args.think_time),
    )
    deadlines = DeadlineConfig(
        tbt_s=args.tbt_deadline,
        ttft_s=args.ttft_deadline,
        prefill=read_prefill_model(args.prefill_profile) if args.prefill_profile else None,
        ttft_slack_s=args.ttft_slack,
        target_miss_rate=args.fluid_miss_rate,
    )
    slo = SloConfig(
        kind=args.slo,
        max_miss_rate=args.max_miss_rate,
        p99_tbt_s=args.p99_tbt,
        p90_ttft_s=args.p90_ttft,
        p90_tpot_s=args.p90_tpot,
        p50_scheduling_delay_s=args.p50_scheduling_delay,
        max_error_rate=args.max_error_rate,
        miss_rate_percentile=args.miss_rate_percentile,
        tbt_percentile=args.tbt_percentile,
        ttft_percentile=args.ttft_percentile,
        tpot_percentile=args.tpot_percentile,
        scheduling_delay_percentile=args.scheduling_delay_percentile,
    )
    load = LoadConfig(
        max_concurrency=args.max_concurrency, max_seconds=args.max_seconds, request_timeout_s=args.request_timeout
    )
    if args.prompts_file is not None and not args.prompts_file.is_file():
        raise ValueError(f"the prompts file (--prompts-file) {args.prompts_file} does not exist")
    return RunConfig(
        workload=workload,
        deadlines=deadlines,
        slo=slo,
        load=load,
        tokenizer_path=args.tokenizer,
        prompts_path=str(args.prompts_file) if args.prompts_file else None,
    )


def _num_requests(args: argparse.Namespace) -> int:
    if args.sessions is None:
        return 100 if args.num_requests is None else args.num_requests
    if args.num_requests is not None:
        raise ValueError("give --sessions or --num-requests, not both (a session holds --turns requests)")
    if args.sessions < 1 or args.turns < 1:
        raise ValueError(f"--sessions and --turns must be at least 1, got {args.sessions} and {args.turns}")
    return args.sessions * args.turns


def _print_summary(metrics: dict[str, object], verdict: str) -> None:
    from metron.report import number

    print(
        f"{metrics['num_requests']} requests: {metrics['num_finished']} finished, {metrics['num_ended_early']} ended "
        f"early, {metrics['num_errors']} failed, {metrics['num_interrupted']} interrupted"
    )
    for key in ("ttft_s.p50", "ttft_s.p99", "tbt_s.p50", "tbt_s.p99", "tpot_s.mean", "fluidity_index.mean"):
        print(f"  {key:<28}{number(metrics.get(key))}")
    rates = ("fluid_token_rate_per_s", "tpot_token_rate_per_s", "p99_tbt_token_rate_per_s", "goodput_per_s")
    for key in (*rates, "service_miss_rate"):
        print(f"  {key:<28}{number(metrics.get(key))}")
    print(f"  SLO {verdict}")


def _command_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from metron.report import write_report
    from metron.runner import run_benchmark

    config = _run_config(args)
    target = _target(args, config)
    _prepare_output_dir(args.output_dir, args.overwrite)
    total = config.workload.num_requests + config.workload.num_warmup_requests
    with tqdm(total=total, unit="req", disable=args.no_progress, file=sys.stderr) as bar:
        outcome = run_benchmark(config, target, args.output_dir, on_done=lambda _: bar.update(), handle_sigint=True)
    report = write_report(args.output_dir)
    _print_summary(outcome.metrics, outcome.verdict.describe())
    print(f"wrote {args.output_dir} (report: {report})")
    if outcome.load.cut:
        print(f"cut at --max-seconds {args.max_seconds}: requests in flight were aborted", file=sys.stderr)
    if outcome.interrupted:
        print("interrupted: the run directory holds what was measured", file=sys.stderr)
        return EXIT_INTERRUPTED
    refusal = _refusal(outcome.records)
    if refusal is not None:
        print(f"metron: error: the target failed every request; the first said: {refusal}", file=sys.stderr)
        return EXIT_TARGET
    return 0


def _prepare_output_dir(path: Path, overwrite: bool, is_own: Callable[[str], bool] = lambda name: False) -> None:
    """Fails before the run, not after it, when the results could not be written, or would
    overwrite files (other than those `is_own` names) without `overwrite`."""
    if path.is_dir() and not overwrite:
        foreign = sorted(entry.name for entry in path.iterdir() if not is_own(entry.name))
        if foreign:
            raise ValueError(
                f"the output directory {path} already holds {', '.join(foreign[:3])}"
                f"{' and more' if len(foreign) > 3 else ''}: choose another or pass --overwrite"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".metron-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"cannot write the output directory {path}: {error}") from error


def _refusal(records: Sequence[RequestRecord]) -> str | None:
    """The first error, when the target failed every measured request it was sent."""
    measured = [r for r in records if not r.warmup and r.outcome != "interrupted"]
    if measured and all(r.outcome == "error" for r in measured):
        return measured[0].error or "unknown error"
    return None


def _command_benchmark(args: argparse.Namespace) -> int:
    profile = profile_config(args)
    base = _run_config(args)
    _target(args, base)  # its arguments are checked before anything is written
    _prepare_output_dir(args.output_dir, args.overwrite)
    return command_benchmark(args, profile, base, lambda config: _target(args, config), _refusal)


def _command_capacity(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from metron import plots
    from metron.capacity import (
        CapacityConfig,
        CapacityStep,
        cached_verdict,
        is_capacity_search_file,
        rate_directory,
        search_capacity,
    )
    from metron.report import write_report
    from metron.runner import run_benchmark

    search = CapacityConfig(
        initial_qps=args.initial_qps, granularity=args.granularity, min_qps=args.min_qps, max_runs=args.max_runs
    )
    base = _run_config(args, rate=args.initial_qps)
    if base.workload.arrivals.kind == "static":
        raise ValueError("capacity search needs arrivals with a rate (poisson, gamma or trace), not static")
    if args.launch or args.grid:
        return _capacity_per_launched_configuration(args, base)
    _prepare_output_dir(args.output_dir, args.overwrite, is_own=is_capacity_search_file)
    num_requests = base.workload.num_requests + base.workload.num_warmup_requests
    probes = tqdm(total=search.max_runs, unit="probe", disable=args.no_progress, file=sys.stderr)

    def evaluate(qps: float) -> CapacityStep:
        config = msgspec.structs.replace(base, workload=base.workload.with_rate(qps))
        directory = rate_directory(args.output_dir, qps)
        target = _target(args, config)
        recorded = {"run": msgspec.to_builtins(config), "target": target.describe()}
        verdict = cached_verdict(directory, recorded, config)
        cached = verdict is not None
        probes.set_description(f"{qps:.4g} QPS")
        if verdict is None:
            with tqdm(total=num_requests, unit="req", leave=False, disable=args.no_progress, file=sys.stderr) as bar:

                def done(_: RequestTimes) -> None:
                    bar.update()

                outcome = run_benchmark(config, target, directory, on_done=done, handle_sigint=True)
            if outcome.interrupted:
                raise KeyboardInterrupt
            refusal = _refusal(outcome.records)
            if refusal is not None:
                raise TargetError(f"the target failed every request at {qps:g} QPS; the first said: {refusal}")
            write_report(directory)
            verdict = outcome.verdict
        step = CapacityStep(qps=qps, passed=verdict.passed, verdict=verdict.describe(), directory=str(directory))
        step = msgspec.structs.replace(step, cached=cached)
        probes.update()
        tqdm.write(f"{qps:10.4g} QPS{' (cached)' if cached else ''}: {step.verdict}", file=sys.stdout)
        return step

    with probes:
        result = search_capacity(evaluate, search)
        probes.total = probes.n  # the search ended before its bound on runs
        probes.refresh()
    (args.output_dir / "capacity.json").write_bytes(
        msgspec.json.format(msgspec.json.encode({"search": search, "result": result}), indent=2) + b"\n"
    )
    plots.capacity_path(
        [(s.qps, s.passed) for s in result.steps], result.capacity_qps, args.output_dir / "capacity.png"
    )
    note = "" if result.converged else f" (not converged within {search.max_runs} runs)"
    (args.output_dir / "report.md").write_text(
        f"# metron capacity\n\nCapacity: **{result.capacity_qps:.4g} QPS**{note} under SLO {base.slo.describe()}.\n\n"
        + "\n".join(
            f"- {s.qps:.4g} QPS: {s.verdict} ([run]({Path(s.directory or '').name}/report.md))" for s in result.steps
        )
        + "\n\n![capacity search](capacity.png)\n"
    )
    print(f"capacity: {result.capacity_qps:.4g} QPS{note}; wrote {args.output_dir}")
    return 0


def _capacity_per_launched_configuration(args: argparse.Namespace, base: RunConfig) -> int:
    from metron.launch_capacity import capacity_per_configuration, is_launch_file, launch_plan, launched_arguments

    plan = launch_plan(args)
    _prepare_output_dir(plan.root, args.overwrite, is_own=lambda name: is_launch_file(name, plan.grid))
    example = {**plan.grid.combinations()[0], "port": "1", "rpc_port": "2"}
    _target(launched_arguments(args, example, plan.root), base)  # its flags, checked before launching

    def search(values: Mapping[str, str], directory: Path) -> None:
        _command_capacity(launched_arguments(args, values, directory))

    rows = capacity_per_configuration(plan, search)
    print(f"wrote {plan.root / 'launch.md'}")
    return EXIT_TARGET if any(row.failure is not None for row in rows) else 0


def _command_profile(args: argparse.Namespace) -> int:
    from metron.prefill_profile import PrefillProfileConfig, run_prefill_profile, write_profile

    try:
        lengths = [int(part) for part in args.prompt_lengths.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--prompt-lengths must be comma-separated integers, got {args.prompt_lengths!r}") from None
    config = PrefillProfileConfig(
        prompt_lengths=tuple(lengths), samples_per_length=args.samples, tokenizer_path=args.tokenizer
    )
    if args.target == "vidur":
        raise ValueError("profile-prefill measures a live server: use --target openai or engine")
    profile = run_prefill_profile(_target(args, None), config)
    write_profile(args.output, profile)
    model = profile.model
    print(
        f"TTFT(L) = {model.intercept_s:.4g} + {model.per_token_s:.4g}*L + {model.per_token_squared_s:.4g}*L^2 s; "
        f"wrote {args.output}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        match args.command:
            case "run":
                return _command_run(args)
            case "benchmark":
                return _command_benchmark(args)
            case "capacity":
                return _command_capacity(args)
            case "profile-prefill":
                return _command_profile(args)
            case "report":
                from metron.report import write_report

                print(f"wrote {write_report(args.run_dir)}")
                return 0
            case _:
                from metron.compare import compare_runs

                print(compare_runs(args.run_a, args.run_b, args.output_dir))
                return 0
    except TargetError as error:
        print(f"metron: error: {error}", file=sys.stderr)
        return EXIT_TARGET
    except ValueError as error:
        print(f"metron: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("metron: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
