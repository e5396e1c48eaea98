"""One benchmark run against a live target: workload -> prompts -> open-loop load -> records ->
summary -> run directory (and report)."""

from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from metron.deadlines import DeadlineConfig
from metron.load_generator import LoadConfig, LoadGenerator, LoadResult
from metron.metrics import RequestRecord, RequestTimes, request_records
from metron.prompts import PromptBuilder, load_tokenizer
from metron.run_format import write_run
from metron.slo import SloConfig, SloVerdict, evaluate_slo
from metron.summary import Metrics, summarize
from metron.targets.base import Target
from metron.workload import WorkloadConfig, generate_workload


class RunConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`tokenizer_path`: the target's `tokenizer.json`, for prompts of exact length (and token
    counting where the server reports no counts)."""

    workload: WorkloadConfig
    deadlines: DeadlineConfig = DeadlineConfig()
    slo: SloConfig = SloConfig()
    load: LoadConfig = LoadConfig()
    tokenizer_path: str | None = None


class RunOutcome(msgspec.Struct):
    records: list[RequestRecord]
    metrics: Metrics
    verdict: SloVerdict
    interrupted: bool
    config: dict[str, object]
    load: LoadResult


def build_prompts(config: RunConfig) -> tuple[list[tuple[object, str]], bool]:
    """Every request of the workload with its prompt text, and whether prompt lengths are exact."""
    tokenizer = load_tokenizer(config.tokenizer_path) if config.tokenizer_path else None
    builder = PromptBuilder(tokenizer, seed=config.workload.seed)
    specs = generate_workload(config.workload)
    prompts = [builder.build(spec.id, spec.prompt_tokens) for spec in specs]
    return list(zip(specs, (p.text for p in prompts), strict=True)), all(p.exact for p in prompts)


async def measure(
    config: RunConfig,
    target: Target,
    on_done: Callable[[RequestTimes], None] | None = None,
    handle_sigint: bool = False,
    generator: LoadGenerator | None = None,
) -> RunOutcome:
    """Checks the target is there (raising TargetUnreachable if not), then runs the workload."""
    await target.check()
    requests, exact = build_prompts(config)
    generator = generator or LoadGenerator(target, config.load)
    result = await generator.run(requests, on_done=on_done, handle_sigint=handle_sigint)  # type: ignore[arg-type]
    records = request_records(result.measured, config.deadlines)
    metrics = summarize(records, config.slo)
    recorded = {
        "tool": "metron",
        "run": msgspec.to_builtins(config),
        "target": target.describe(),
        "prompt_lengths_exact": exact,
        "open_loop": config.load.is_open_loop,
        "interrupted": result.interrupted,
        "cut_at_max_seconds": result.cut,
    }
    return RunOutcome(
        records=records,
        metrics=metrics,
        verdict=evaluate_slo(metrics, config.slo, num_planned=config.workload.num_requests),
        interrupted=result.interrupted,
        config=recorded,
        load=result,
    )


def run_benchmark(
    config: RunConfig,
    target: Target,
    output_dir: str | Path,
    on_done: Callable[[RequestTimes], None] | None = None,
    handle_sigint: bool = False,
) -> RunOutcome:
    """`measure` under Trio, then writes the run directory (also after Ctrl-C)."""

    async def main() -> RunOutcome:
        async with target:
            return await measure(config, target, on_done=on_done, handle_sigint=handle_sigint)

    outcome = trio.run(main)
    write_run(output_dir, outcome.records, outcome.metrics, outcome.config, outcome.verdict)
    return outcome
