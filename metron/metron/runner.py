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
from metron.prompts_file import read_prompts_file
from metron.run_format import write_run
from metron.sessions import Turn, first_turn
from metron.slo import SloConfig, SloVerdict, evaluate_slo
from metron.summary import Metrics, summarize
from metron.targets.base import Target
from metron.workload import RequestSpec, WorkloadConfig, generate_workload


class RunConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`tokenizer_path`: the target's `tokenizer.json`, for prompts of exact length (and token
    counting where the server reports no counts). `prompts_path`: a JSONL file of the user's
    prompts (`metron.prompts_file`) sent instead of synthetic ones; the workload still draws the
    arrivals and output lengths, and the prompt lengths are the file's."""

    workload: WorkloadConfig
    deadlines: DeadlineConfig = DeadlineConfig()
    slo: SloConfig = SloConfig()
    load: LoadConfig = LoadConfig()
    tokenizer_path: str | None = None
    prompts_path: str | None = None


class RunOutcome(msgspec.Struct):
    records: list[RequestRecord]
    metrics: Metrics
    verdict: SloVerdict
    interrupted: bool
    config: dict[str, object]
    load: LoadResult


def build_prompts(config: RunConfig) -> tuple[list[tuple[RequestSpec, Turn | str]], bool]:
    """Every request of the workload with what it sends (a first turn: its `Turn`; a session's
    later turn: its new user message), and whether the prompt lengths of first turns are exact."""
    workload = config.workload
    tokenizer = load_tokenizer(config.tokenizer_path) if config.tokenizer_path else None
    conversations = read_prompts_file(config.prompts_path) if config.prompts_path else None
    builder = PromptBuilder(tokenizer, seed=workload.seed)
    prefix = builder.shared_prefix(workload.shared_prefix_tokens) if workload.shared_prefix_tokens else None
    drawn = {spec.id: spec for spec in generate_workload(workload)}
    built: dict[int, tuple[RequestSpec, Turn | str]] = {}
    exact = prefix is None or prefix.exact
    for request_id in sorted(drawn):
        spec = drawn[request_id]
        turn = workload.sessions.turn_of(request_id)
        if conversations is None and turn == 0:
            prompt = builder.build(request_id, spec.prompt_tokens, prefix.text if prefix else "")
            built[request_id] = (spec, first_turn(prompt.text))
            exact = exact and prompt.exact
        elif conversations is None:
            before = drawn[request_id - 1]
            message = builder.build(request_id, spec.prompt_tokens - before.prompt_tokens - before.output_tokens)
            built[request_id] = (spec, message.text)
        elif turn == 0:
            conversation = conversations[request_id // workload.sessions.num_turns % len(conversations)]
            opening = conversation.first_turn(prefix.text if prefix else "")
            built[request_id] = (msgspec.structs.replace(spec, prompt_tokens=builder.count(opening.prompt)), opening)
            exact = exact and tokenizer is not None
        else:
            conversation = conversations[request_id // workload.sessions.num_turns % len(conversations)]
            text = conversation.user_message(turn)
            before_spec = built[request_id - 1][0]
            estimate = before_spec.prompt_tokens + before_spec.output_tokens + builder.count(text)
            built[request_id] = (msgspec.structs.replace(spec, prompt_tokens=estimate), text)
    return [built[spec_id] for spec_id in drawn], exact


async def measure(
    config: RunConfig,
    target: Target,
    on_done: Callable[[RequestTimes], None] | None = None,
    handle_sigint: bool = False,
    generator: LoadGenerator | None = None,
) -> RunOutcome:
    """Builds the prompts (a ValueError for bad input comes first), checks the target is there
    (raising TargetUnreachable if not), then runs the workload."""
    requests, exact = build_prompts(config)
    await target.check()
    generator = generator or LoadGenerator(target, config.load)
    result = await generator.run(requests, on_done=on_done, handle_sigint=handle_sigint)
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
