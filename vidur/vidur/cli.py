"""The `vidur` command: simulate, search, profile, predictor, fit-overheads, validate, catalogue.

The only place that reads the environment: `SERVEKIT_DATA` points at the data directory
(traces/ and profiling/); by default it is `../shared/data` beside the repository. The trained
predictor is cached in `$XDG_CACHE_HOME/servekit/vidur` (default `~/.cache/servekit/vidur`).
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from vidur.api import deadlines_for, train_predictor, workload_config_for, workload_for
from vidur.config import VidurConfig, default_profiling_roots, load_config, profiling_roots
from vidur.deployment import POLICIES, ROUTERS, plan_deployment
from vidur.errors import DeploymentError
from vidur.gpus import CATALOGUE as GPUS
from vidur.gpus import profiled_device_folder, profiling_root_of
from vidur.models import CATALOGUE as MODELS
from vidur.models import get_model
from vidur.output import cut_summary, score, simulation_summary, write_simulated_run
from vidur.predictor import OperatorPredictor
from vidur.predictor_cache import cached_predictor, profile_fingerprint
from vidur.profiles import load_profiles
from vidur.simulation import Simulator, Workload
from vidur.validation import attention_error, interpolation_error, roofline_transfer_error

REPOSITORY = Path(__file__).resolve().parents[2]


def data_dir(argument: str | None) -> Path:
    if argument:
        return Path(argument)
    if os.environ.get("SERVEKIT_DATA"):
        return Path(os.environ["SERVEKIT_DATA"])
    return REPOSITORY.parent / "shared" / "data"


def predictor_cache_dir(args: argparse.Namespace) -> Path | None:
    if args.no_predictor_cache:
        return None
    if args.predictor_cache_dir:
        return Path(args.predictor_cache_dir)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "servekit" / "vidur"


def seconds_since_start(started: float, *, whole_process: bool) -> float:
    """Since the process started (Linux: from /proc, so interpreter start-up and imports count)
    when it runs just this command, else since `started`."""
    if whole_process:
        try:
            fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            uptime = float(Path("/proc/uptime").read_text().split()[0])
            return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return time.perf_counter() - started


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a TOML or YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    parser.add_argument("--data-dir", help="holds traces/ and profiling/ (default: $SERVEKIT_DATA or ../shared/data)")
    parser.add_argument("--profiling-dir", action="append", default=[], help="extra profiles, overriding")
    parser.add_argument("--model", help="catalogue name or path to a config.json")
    parser.add_argument("--gpu")
    parser.add_argument("--tp", type=int, help="tensor-parallel degree")
    parser.add_argument("--pp", type=int, help="pipeline-parallel degree")
    parser.add_argument("--replicas", type=int)
    parser.add_argument("--router", choices=ROUTERS)
    parser.add_argument("--policy", choices=POLICIES)
    parser.add_argument("--token-budget", type=int)
    parser.add_argument("--max-num-seqs", type=int)
    parser.add_argument("--trace", help="a trace CSV (by name in the traces directory) for arrivals and lengths")
    parser.add_argument("--num-requests", type=int)
    parser.add_argument("--seed", type=int, help="seeds the workload and the random router")
    parser.add_argument("--output-dir")
    parser.add_argument(
        "--predictor-cache-dir", help="where the trained predictor is kept (default: $XDG_CACHE_HOME/servekit/vidur)"
    )
    parser.add_argument("--no-predictor-cache", action="store_true", help="train the predictor, do not cache it")


def _overrides(args: argparse.Namespace) -> list[str]:
    flags = {
        "model": "replica.model",
        "gpu": "replica.gpu",
        "tp": "replica.tensor_parallel",
        "pp": "replica.pipeline_parallel",
        "replicas": "cluster.num_replicas",
        "router": "cluster.router",
        "policy": "scheduler.policy",
        "token_budget": "scheduler.token_budget",
        "max_num_seqs": "scheduler.max_num_seqs",
        "num_requests": "workload.num_requests",
        "max_simulated_seconds": "output.max_simulated_seconds",
    }
    overrides = [
        f"{key}={getattr(args, flag)}" for flag, key in flags.items() if getattr(args, flag, None) is not None
    ]
    if args.seed is not None:
        overrides += [f"cluster.seed={args.seed}", f"workload.seed={args.seed}"]
    if args.trace:
        overrides += [
            "workload.arrivals.kind=trace",
            f"workload.arrivals.trace_path={args.trace}",
            "workload.lengths.kind=trace",
            f"workload.lengths.trace_path={args.trace}",
            "workload.lengths.shuffle=false",
        ]
    return overrides + args.set


def _load(args: argparse.Namespace) -> tuple[VidurConfig, OperatorPredictor, list[Path]]:
    data = data_dir(args.data_dir)
    config = load_config(args.config, _overrides(args), traces_dir=data / "traces")
    base = Path(args.config).parent if args.config else Path(".")
    roots = profiling_roots(config, data, base) + [Path(p) for p in args.profiling_dir]
    roots += device_roots(config, roots)
    return config, cached_predictor(roots, predictor_cache_dir(args)), roots


def device_roots(config: VidurConfig, roots: list[Path]) -> list[Path]:
    """The profiling roots of the profiled devices the config names by folder (`--gpu DIR`)."""
    found = []
    for gpu in (config.deployment.replica.gpu, *config.search.gpus):
        folder = profiled_device_folder(gpu)
        if folder is not None:
            root = profiling_root_of(folder)
            if root not in found and root not in [r.resolve() for r in roots]:
                found.append(root)
    return found


def _print_metrics(metrics: Mapping[str, object], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = metrics.get(key)
        print(f"  {key:<34} {value:.4g}" if isinstance(value, float) else f"  {key:<34} {value}")


def simulate_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.qps is not None and not (args.qps > 0 and math.isfinite(args.qps)):
        raise ValueError(f"--qps must be a positive number of requests/s, got {args.qps}")
    limit = args.max_simulated_seconds
    if limit is not None and not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"--max-simulated-seconds must be a positive number of seconds, got {limit}")
    config, predictor, _ = _load(args)
    if args.qps is not None:
        config = dataclasses.replace(config, workload=config.workload.with_rate(args.qps))
    deployment = plan_deployment(config.deployment, predictor)
    simulator = Simulator(deployment)
    workload = workload_for(config.workload, deployment)
    # The iteration records (a long run's largest) go to disk as the run goes, next to the run
    # written; they are gone once the command ends (iterations.csv keeps them).
    spill_parent = Path(args.output_dir) if args.output_dir else None
    if spill_parent is not None:
        spill_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".iterations-", dir=spill_parent) as spill_directory:
        return _simulate_and_report(args, config, simulator, workload, started, spill_directory)


def _simulate_and_report(
    args: argparse.Namespace,
    config: VidurConfig,
    simulator: Simulator,
    workload: Workload,
    started: float,
    spill_directory: str,
) -> int:
    deployment = simulator.deployment
    result = simulator.run(
        workload,
        record_iterations=config.output.record_iterations,
        max_simulated_s=config.output.max_simulated_seconds,
        spill_directory=spill_directory,
    )
    deadlines = deadlines_for(config, simulator)
    if args.output_dir:
        scored = write_simulated_run(
            result,
            args.output_dir,
            deadlines=deadlines,
            slo=config.slo,
            workload_config=workload_config_for(config.workload, deployment),
            trace_max_iterations=config.output.trace_max_iterations,
            plots=config.output.plots,
        )
    else:
        scored = score(result, deadlines, config.slo)
    summary = scored.simulation or simulation_summary(result)
    print(
        f"{deployment.shape.model.name} on {deployment.num_replicas} x {deployment.shape.num_gpus} "
        f"{deployment.shape.gpu.name} ({deployment.scheduler_config().policy}): {len(workload)} requests, "
        f"{result.num_iterations} iterations in {result.wall_s:.3f} s of wall time"
    )
    _print_metrics(
        scored.metrics,
        (
            "num_finished",
            "ttft_s.p50",
            "ttft_s.p99",
            "tbt_s.p50",
            "tbt_s.p99",
            "tpot_s.mean",
            "normalized_latency_s.p50",
            "fluidity_index.mean",
            "request_throughput_per_s",
            "output_token_throughput_per_s",
        )
        + (("cached_prompt_fraction",) if scored.metrics.get("cached_prompt_fraction") is not None else ()),
    )
    _print_metrics(summary["utilization"], ("mfu", "mbu", "busy_fraction"))  # type: ignore[arg-type]
    if result.is_cut:
        cut = cut_summary(result)
        print(
            f"  cut at {cut['max_simulated_seconds']} simulated s: {cut['num_unfinished']} requests unfinished "
            f"(interrupted), {cut['num_not_arrived']} not arrived (left out)"
        )
    if scored.verdict is not None:
        print(f"  SLO ({config.slo.kind}): {scored.verdict.describe()}")
    if args.output_dir and config.output.plots:  # metron's report is built around its figures
        from metron.report import write_report

        report = write_report(args.output_dir, title=f"vidur simulation: {Path(args.output_dir).name}")
        print(f"wrote {args.output_dir} (report: {report})")
    elif args.output_dir:
        print(f"wrote {args.output_dir}")
    whole_s = seconds_since_start(started, whole_process=args.whole_process)
    print(f"time: simulation {result.wall_s:.3f} s, whole command {whole_s:.2f} s")
    return 0


def search_command(args: argparse.Namespace) -> int:
    from vidur.search.report import format_table, write_search_results
    from vidur.search.runner import run_search

    config, predictor, roots = _load(args)
    output_dir = Path(args.output_dir or "runs/search")
    cache_dir = Path(args.cache_dir) if args.cache_dir else output_dir / "cache"
    points = run_search(
        config,
        predictor,
        cache_dir=cache_dir,
        fingerprint=profile_fingerprint(roots),
        workers=args.workers or os.cpu_count() or 1,
        progress=not args.no_progress,
        ray_address=args.ray,
    )
    print(format_table(points))
    context = {"workload": msgspec.to_builtins(config.workload), "slo": msgspec.to_builtins(config.slo)}
    write_search_results(points, output_dir, context)
    print(f"wrote {output_dir}/search.json, search.csv, pareto.png")
    return 0


def profile_command(args: argparse.Namespace) -> int:
    from vidur.profiler import ProfileConfig, profile

    defaults = ProfileConfig()

    def chosen(name: str) -> tuple[int, ...]:
        value = getattr(args, name)
        return tuple(value) if value else getattr(defaults, name)  # type: ignore[no-any-return]

    config = ProfileConfig(
        num_tokens=chosen("num_tokens"),
        tensor_parallel=tuple(args.tp) if args.tp else defaults.tensor_parallel,
        warmup=args.warmup,
        repeats=args.repeats,
        attention=not args.no_attention,
        prefill_chunks=chosen("prefill_chunks"),
        prefill_contexts=chosen("prefill_contexts"),
        decode_batch_sizes=chosen("decode_batch_sizes"),
        decode_contexts=chosen("decode_contexts"),
        device=args.device,
        dtype=args.dtype,
        attention_backend=args.attention_backend,
        block_size=args.block_size,
        device_spec=not args.no_device_spec,
    )
    folder = profile(get_model(args.model), config, Path(args.output_dir), args.device_name, args.model)
    print(f"wrote {folder}")
    return 0


def predictor_command(args: argparse.Namespace) -> int:
    data = data_dir(args.data_dir)
    roots = default_profiling_roots(data) + [Path(p) for p in args.profiling_dir]
    predictor = train_predictor(roots)
    profiles = load_profiles(roots)
    interpolation = interpolation_error(profiles, args.holdout_every)
    transfer = roofline_transfer_error(profiles)
    report = {
        "train_s": predictor.train_s,
        "interpolation": interpolation.as_dict(),
        "roofline_leave_one_model_out": {gpu: r.as_dict() for gpu, r in transfer.items()},
        "attention": attention_error(profiles, args.holdout_every).as_dict(),
    }
    print(json.dumps(report, indent=2))
    return 0


def fit_overheads_command(args: argparse.Namespace) -> int:
    from vidur.overheads_fit import fit_overheads_from_log

    print(fit_overheads_from_log(Path(args.iteration_log)).toml(), end="")
    return 0


def validate_command(args: argparse.Namespace) -> int:
    import shlex

    from vidur.validate_engine import ValidateConfig, validate

    data = data_dir(args.data_dir)
    overrides = [f"workload.num_requests={args.num_requests}"] if args.num_requests else []
    if args.trace:
        overrides += [f"workload.lengths.kind=trace", f"workload.lengths.trace_path={args.trace}"]
    config = load_config(args.config, overrides + args.set, traces_dir=data / "traces")
    report = validate(
        ValidateConfig(
            workload=config.workload,
            output_dir=Path(args.output_dir),
            engine_args=tuple(shlex.split(args.engine_args or "")),
            address=args.address,
            iteration_log=Path(args.iteration_log) if args.iteration_log else None,
            device_folder=Path(args.device) if args.device else None,
            loads=tuple(args.loads),
            profile_repeats=args.profile_repeats,
            deadlines=config.deadlines,
        )
    )
    print(f"engine capacity {report['capacity_qps']:.3g} requests/s; simulator error per load:")
    for load in report["loads"]:
        errors = load["errors"]
        print(
            f"  {load['load']:>4.0%} ({load['qps']:.3g} requests/s): normalized latency p50 "
            f"{errors['normalized_latency_p50']:+.1%} p95 {errors['normalized_latency_p95']:+.1%}, TTFT p50 "
            f"{errors['ttft_p50']:+.1%}, TBT p50 {errors['tbt_p50']:+.1%}, throughput "
            f"{errors['request_throughput']:+.1%}"
        )
    print(f"wrote {args.output_dir}/validation.json, validation.md")
    return 0


def catalogue_command(args: argparse.Namespace) -> int:
    from vidur.catalogue import aliases_by_name, profiled_pairs
    from vidur.gpus import ALIASES as GPU_ALIASES
    from vidur.models import ALIASES as MODEL_ALIASES

    def aliases(names: list[str]) -> str:
        return f"  aliases: {', '.join(names)}" if names else ""

    model_aliases, gpu_aliases = aliases_by_name(MODEL_ALIASES), aliases_by_name(GPU_ALIASES)
    print("models:")
    for name, model in MODELS.items():
        print(
            f"  {name:<40} {model.num_params / 1e9:6.1f} B params, context {model.max_position_embeddings:<6}"
            f"{aliases(model_aliases.get(name, []))}"
        )
    print("GPUs:")
    for name, gpu in GPUS.items():
        print(
            f"  {name:<10} {gpu.memory_gib:6.1f} GiB  {gpu.memory_bandwidth_gb_s:6.0f} GB/s  "
            f"{gpu.bf16_tflops:6.1f} TFLOP/s  ${gpu.price_per_hour:.2f}/h{aliases(gpu_aliases.get(name, []))}"
        )
    roots = default_profiling_roots(data_dir(args.data_dir)) + [Path(p) for p in args.profiling_dir]
    roots = [root for root in roots if root.is_dir()]
    profiles = load_profiles(roots)
    print(f"profiled (GPU, model) pairs, in {', '.join(map(str, roots)) or 'no profiling root (none found)'}:")
    for pair in profiled_pairs(profiles, MODELS):
        tables = f" ({pair.tables_of}'s tables: the same layer shape)" if pair.tables_of else ""
        degrees = ", ".join(map(str, pair.tensor_parallel_degrees))
        print(f"  {pair.gpu:<10} {pair.model:<40} TP {degrees}{tables}")
    profiled = {gpu for gpu, _ in profiles.compute}
    for name, gpu in GPUS.items():
        if name not in profiled:
            borrowed = (
                f"{gpu.reference_gpu}'s fitted rooflines, scaled by datasheet peaks"
                if gpu.reference_gpu in profiled
                else "nor a reference GPU with profiles (a MissingProfileError)"
            )
            print(f"  {name:<10} no tables of its own: {borrowed}")
    print(f"attention kernels profiled on: {', '.join(sorted(profiles.attention)) or 'none'}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="vidur", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="simulate a deployment on a workload")
    _common(simulate)
    simulate.add_argument("--qps", type=float, help="request rate (a trace is rescaled to it)")
    simulate.add_argument(
        "--max-simulated-seconds",
        type=float,
        metavar="S",
        help="stop at simulated time S: requests unfinished then are interrupted, later ones left out",
    )
    simulate.set_defaults(run=simulate_command)

    search = commands.add_parser("search", help="capacity and cost of every deployment in a space")
    _common(search)
    search.add_argument("--workers", type=int, help="worker processes, or a local Ray's CPUs (default: one per core)")
    search.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="each point as a task on the Ray cluster at ADDRESS (host:port or ray://host:port); without "
        "ADDRESS on a local Ray started for the run (needs servekit-vidur[ray])",
    )
    search.add_argument(
        "--cache-dir", help="finished probes and points (default: OUTPUT_DIR/cache; on a Ray cluster: a shared disk)"
    )
    search.add_argument("--no-progress", action="store_true")
    search.set_defaults(run=search_command)

    profile = commands.add_parser(
        "profile", help="time what the engine runs on this device, in Vidur's table format, with the device's spec"
    )
    profile.add_argument("--model", required=True)
    profile.add_argument("--tp", type=int, nargs="+", help="tensor-parallel degrees to profile")
    profile.add_argument("--num-tokens", type=int, nargs="+")
    profile.add_argument("--warmup", type=int, default=3)
    profile.add_argument("--repeats", type=int, default=10)
    profile.add_argument("--no-attention", action="store_true")
    profile.add_argument("--prefill-chunks", type=int, nargs="+", help="attention: prefill chunk sizes")
    profile.add_argument("--prefill-contexts", type=int, nargs="+", help="attention: cached tokens before a chunk")
    profile.add_argument("--decode-batch-sizes", type=int, nargs="+", help="attention: decodes per batch")
    profile.add_argument("--decode-contexts", type=int, nargs="+", help="attention: context of each decode")
    profile.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    profile.add_argument("--device-name", help="folder name for this device's profiles")
    profile.add_argument("--dtype", default="auto", help="as the engine's --dtype (auto: float32 on the CPU)")
    profile.add_argument("--attention-backend", default="auto", help="as the engine's --attention-backend")
    profile.add_argument("--block-size", type=int, default=16, help="KV block size, as the engine's --block-size")
    profile.add_argument("--no-device-spec", action="store_true", help="do not measure and write device.json")
    profile.add_argument("--output-dir", default="profiles")
    profile.set_defaults(run=profile_command)

    predictor = commands.add_parser("predictor", help="train the predictor and report its held-out error")
    predictor.add_argument("--data-dir")
    predictor.add_argument("--profiling-dir", action="append", default=[])
    predictor.add_argument("--holdout-every", type=int, default=4)
    predictor.set_defaults(run=predictor_command)

    fit = commands.add_parser("fit-overheads", help="[cpu_overheads] fitted from an engine's --iteration-log")
    fit.add_argument("iteration_log")
    fit.set_defaults(run=fit_overheads_command)

    check = commands.add_parser(
        "validate", help="run a workload against the engine at several loads and simulate the same requests"
    )
    check.add_argument("--engine-args", help="arguments for `python -m engine` (validate starts it), one string: "
                       "--engine-args=\"--num-kv-blocks 512\"")
    check.add_argument("--address", help="HOST:PORT of a running engine's RPC, instead of starting one")
    check.add_argument("--iteration-log", help="with --address: the file that engine's --iteration-log writes")
    check.add_argument("--device", help="the device's profile folder (vidur profile's compute/<device>); "
                                        "default: profile the engine's device first")
    check.add_argument("--loads", type=float, nargs="+", default=[0.25, 0.5, 0.85],
                       help="fractions of the engine's measured capacity")
    check.add_argument("--profile-repeats", type=int, default=10)
    check.add_argument("--config", help="a TOML or YAML config: its [workload] and [deadlines] are used")
    check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    check.add_argument("--data-dir")
    check.add_argument("--trace", help="a trace CSV for request lengths")
    check.add_argument("--num-requests", type=int, help="requests per load")
    check.add_argument("--output-dir", default="runs/validate")
    check.set_defaults(run=validate_command)

    catalogue = commands.add_parser(
        "catalogue", help="list the models and GPUs, their aliases, and the (GPU, model) pairs with profiles"
    )
    catalogue.add_argument("--data-dir", help="holds profiling/ (default: $SERVEKIT_DATA or ../shared/data)")
    catalogue.add_argument("--profiling-dir", action="append", default=[], help="extra profiles")
    catalogue.set_defaults(run=catalogue_command)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.whole_process = argv is None  # the command line itself, not a call from Python
    try:
        return int(args.run(args))
    except (ValueError, DeploymentError, RuntimeError) as error:
        print(f"vidur: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
