"""A profile's levels run one after another against a live target, each into its own run
directory (with its report), then the summary of them all (metron.sweep_summary). A progress bar
counts the levels and one below it the current level's requests."""

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from tqdm import tqdm

from metron.metrics import RequestRecord, RequestTimes
from metron.profiles import Level, ProfileConfig, level_config, planned_levels, sweep_levels
from metron.report import number, write_report
from metron.runner import RunConfig, run_benchmark
from metron.sweep_summary import LevelSummary, summarize_level, write_sweep
from metron.targets.base import Target, TargetError


class ProfileOutcome(msgspec.Struct):
    levels: list[LevelSummary]
    report: Path
    interrupted: bool


def run_profile(
    profile: ProfileConfig,
    base: RunConfig,
    make_target: Callable[[RunConfig], Target],
    output_dir: Path,
    refusal: Callable[[Sequence[RequestRecord]], str | None],
    show_progress: bool = True,
) -> ProfileOutcome:
    """Runs every level of `profile` on `base`'s workload. Ctrl-C ends the current level and the
    profile, keeping what was measured; a target that fails every request of a level raises
    TargetError. sweep.json and sweep.md cover the levels run so far in either case."""
    pending = planned_levels(profile)
    num_levels = len(pending) + (profile.num_sweep_rates if profile.kind == "sweep" else 0)
    num_requests = base.workload.num_requests + base.workload.num_warmup_requests
    done: list[LevelSummary] = []
    with tqdm(total=num_levels, unit="level", disable=not show_progress, file=sys.stderr) as overall:
        while pending:
            level = pending.pop(0)
            overall.set_description(level.name)
            with tqdm(total=num_requests, unit="req", leave=False, disable=not show_progress, file=sys.stderr) as bar:
                summary, interrupted, failure = _run_level(level, base, make_target, output_dir, bar.update, refusal)
            done.append(summary)
            overall.update()
            if interrupted or failure is not None:
                report = write_sweep(output_dir, profile, done)
                if failure is not None:
                    raise TargetError(f"the target failed every request of level {level.name}; the first said: {failure}")
                return ProfileOutcome(levels=done, report=report, interrupted=True)
            tqdm.write(_describe(summary), file=sys.stdout)
            if profile.kind == "sweep" and len(done) == 2:
                bounds = [s.request_throughput_per_s or 0.0 for s in done]
                try:
                    pending = sweep_levels(bounds[0], bounds[1], profile.num_sweep_rates)
                except ValueError:
                    write_sweep(output_dir, profile, done)
                    raise
                overall.total = len(done) + len(pending)
                overall.refresh()
    return ProfileOutcome(levels=done, report=write_sweep(output_dir, profile, done), interrupted=False)


def _run_level(
    level: Level,
    base: RunConfig,
    make_target: Callable[[RunConfig], Target],
    output_dir: Path,
    on_done: Callable[[], object],
    refusal: Callable[[Sequence[RequestRecord]], str | None],
) -> tuple[LevelSummary, bool, str | None]:
    """The level's summary, whether Ctrl-C stopped it, and the target's refusal, if any."""
    config = level_config(base, level)
    directory = output_dir / level.name
    def done(_: RequestTimes) -> None:
        on_done()

    outcome = run_benchmark(config, make_target(config), directory, on_done=done, handle_sigint=True)
    write_report(directory, title=f"metron {level.profile} level: {level.name}")
    summary = summarize_level(level, level.name, outcome.metrics, outcome.load.cut)
    return summary, outcome.interrupted, refusal(outcome.records)


def _describe(level: LevelSummary) -> str:
    cut = " (cut at --max-seconds)" if level.cut_at_max_seconds else ""
    return (
        f"{level.name:>16}: {number(level.request_throughput_per_s)} req/s, "
        f"{number(level.output_token_throughput_per_s)} tokens/s, TTFT P50 {number(level.latencies['ttft_s.p50'])} s, "
        f"TBT P99 {number(level.latencies['tbt_s.p99'])} s{cut}"
    )
