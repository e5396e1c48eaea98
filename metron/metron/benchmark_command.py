"""`metron benchmark --profile ...`: its own arguments and what it prints. The workload, target,
scoring and load arguments are `metron run`'s (metron.cli); the profile sets each level's
arrivals and concurrency limit."""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from metron.metrics import RequestRecord
from metron.profiles import PROFILES, ProfileConfig
from metron.runner import RunConfig
from metron.sweep_summary import HTML_REPORT
from metron.targets.base import Target

EXIT_INTERRUPTED = 130


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("profile")
    group.add_argument(
        "--profile",
        choices=PROFILES,
        required=True,
        help="synchronous: one at a time; concurrent: closed loop per --concurrency; throughput: all at once; "
        "constant, poisson: at --rate; sweep: synchronous, throughput, then --sweep-rates rates between",
    )
    group.add_argument("--concurrency", metavar="N[,N...]", help="concurrent: the levels, comma-separated")
    group.add_argument(
        "--sweep-rates",
        type=int,
        default=ProfileConfig(kind="sweep").num_sweep_rates,
        metavar="N",
        help="sweep: constant rates between the synchronous and throughput request rates",
    )


def profile_config(args: argparse.Namespace) -> ProfileConfig:
    if args.max_concurrency is not None:
        raise ValueError("--max-concurrency does not go with --profile: use --profile concurrent --concurrency N")
    levels: tuple[int, ...] = ()
    if args.concurrency is not None:
        try:
            levels = tuple(int(part) for part in args.concurrency.split(","))
        except ValueError:
            raise ValueError(f"--concurrency must be comma-separated integers, got {args.concurrency!r}") from None
    return ProfileConfig(kind=args.profile, concurrencies=levels, rate=args.rate, num_sweep_rates=args.sweep_rates)


def command_benchmark(
    args: argparse.Namespace,
    profile: ProfileConfig,
    base: RunConfig,
    make_target: Callable[[RunConfig], Target],
    refusal: Callable[[Sequence[RequestRecord]], str | None],
) -> int:
    from metron.profile_run import run_profile

    output_dir: Path = args.output_dir
    outcome = run_profile(profile, base, make_target, output_dir, refusal, show_progress=not args.no_progress)
    page = outcome.report.with_name(HTML_REPORT)
    print(f"wrote {output_dir}: {len(outcome.levels)} levels (report: {outcome.report}, {page})")
    if outcome.interrupted:
        print("interrupted: the output directory holds the levels measured so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
