"""`metron profile-prefill`: TTFT against prompt length at concurrency 1, several samples per
length, and the fitted `PrefillModel` whose prediction (plus a slack) sets each request's TTFT
deadline in deadline-based SLOs."""

from pathlib import Path

import msgspec
import numpy as np
import trio

from metron.load_generator import LoadConfig, LoadGenerator
from metron.prefill_model import PrefillModel, fit_prefill_model
from metron.prompts import PromptBuilder, load_tokenizer
from metron.targets.base import Target
from metron.workload import RequestSpec


class PrefillProfileConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    prompt_lengths: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    samples_per_length: int = 3
    tokenizer_path: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if len(set(self.prompt_lengths)) < 2 or min(self.prompt_lengths) < 1:
            raise ValueError("prompt_lengths needs at least two different lengths, each at least 1 token")
        if self.samples_per_length < 1:
            raise ValueError(f"samples_per_length must be at least 1, got {self.samples_per_length}")


class PrefillProfile(msgspec.Struct, frozen=True, kw_only=True):
    model: PrefillModel
    prompt_tokens: list[int]
    ttft_s: list[float]
    prompt_lengths_exact: bool
    target: dict[str, object] = {}


async def profile_prefill(target: Target, config: PrefillProfileConfig) -> PrefillProfile:
    """Sends one-output-token requests one at a time, every length `samples_per_length` times
    (interleaved, so drift over time spreads across lengths), and fits the model to the median
    TTFT of each length (one slow sample does not bend the curve)."""
    tokenizer = load_tokenizer(config.tokenizer_path) if config.tokenizer_path else None
    builder = PromptBuilder(tokenizer, seed=config.seed)
    await target.check()
    lengths = fitting_lengths(config.prompt_lengths, target.max_model_len)
    specs = [
        RequestSpec(id=i, arrival_s=0.0, prompt_tokens=length, output_tokens=1)
        for i, length in enumerate(lengths * config.samples_per_length)
    ]
    prompts = [builder.build(spec.id, spec.prompt_tokens) for spec in specs]
    generator = LoadGenerator(target, LoadConfig(max_concurrency=1, start_delay_s=0.0))
    result = await generator.run(list(zip(specs, (p.text for p in prompts), strict=True)))
    lengths, ttfts, failures = [], [], []
    for measured in result.measured:
        if measured.error is None and measured.token_times_s:
            lengths.append(measured.prompt_tokens)
            ttfts.append(measured.token_times_s[0] - measured.arrival_s)
        else:
            failures.append(f"request {measured.id}: {measured.error or 'no token'}")
    if failures:
        raise ValueError(f"{len(failures)} profiling requests failed, e.g. {failures[0]}")
    by_length: dict[int, list[float]] = {}
    for length, ttft in zip(lengths, ttfts, strict=True):
        by_length.setdefault(length, []).append(ttft)
    medians = {length: float(np.median(samples)) for length, samples in by_length.items()}
    return PrefillProfile(
        model=fit_prefill_model(list(medians), list(medians.values())),
        prompt_tokens=lengths,
        ttft_s=ttfts,
        prompt_lengths_exact=all(p.exact for p in prompts),
        target=target.describe(),
    )


def fitting_lengths(prompt_lengths: tuple[int, ...], max_model_len: int | None) -> list[int]:
    """The lengths whose prompt and one output token fit the server's context (all of them where
    it does not say), the longest that fits standing in for those that do not."""
    if max_model_len is None:
        return list(prompt_lengths)
    longest = max_model_len - 1
    fitting = sorted({min(length, longest) for length in prompt_lengths})
    if len(fitting) < 2:
        raise ValueError(
            f"the server's context of {max_model_len} tokens leaves fewer than two of the prompt lengths "
            f"{list(prompt_lengths)}"
        )
    return fitting


def run_prefill_profile(target: Target, config: PrefillProfileConfig) -> PrefillProfile:
    async def main() -> PrefillProfile:
        async with target:
            return await profile_prefill(target, config)

    return trio.run(main)


def write_profile(path: str | Path, profile: PrefillProfile) -> None:
    Path(path).write_bytes(msgspec.json.format(msgspec.json.encode(profile), indent=2) + b"\n")


def read_prefill_model(path: str | Path) -> PrefillModel:
    """The model of a profile written by `metron profile-prefill`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prefill profile {path} does not exist")
    try:
        return msgspec.json.decode(path.read_bytes(), type=PrefillProfile).model
    except msgspec.ValidationError as error:
        raise ValueError(f"{path} is not a prefill profile: {error}") from error
    except msgspec.DecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
