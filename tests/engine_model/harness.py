"""Drives a `ModelRunner` with the real Rust scheduler, building each step from its batch with the
engine's own `build_step`, and computes the Hugging Face reference outputs to compare with."""

import random
from collections import deque
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams
from engine.scheduler import Batch, Scheduler, SchedulerConfig
from engine.core.step_builder import build_step
from engine.wire.step import NewRequest, StepOutput, TokenLogprobs
from engine.worker.decode_buckets import DecodeBucket

GREEDY = SamplingParams(temperature=0.0, max_tokens=1024)


@dataclass
class Generation:
    outputs: dict[int, list[int]]
    num_steps: int = 0
    num_preemptions: int = 0
    num_mixed_steps: int = 0
    max_chunk_tokens: int = 0
    """Prompt tokens the scheduler found in the prefix cache at requests' first steps."""
    num_cached_prompt_tokens: int = 0
    step_sizes: list[int] = field(default_factory=list)
    """Per request: the logprobs of each output token (requests that ask for them)."""
    logprobs: dict[int, list[TokenLogprobs]] = field(default_factory=dict)
    """Per request: prompt position -> the logprobs of the prompt token there."""
    prompt_logprobs: dict[int, dict[int, TokenLogprobs]] = field(default_factory=dict)
    """Requests that finished after the last batch ran (the workers learn of it with the next one)."""
    finished_since_last_step: set[int] = field(default_factory=set)


def note_padded_decodes(runner: ModelRunner, buckets: list[DecodeBucket], monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends to `buckets` the bucket of each padded decode step `runner` runs (none unless it pads)."""
    if runner.padded_decode is None:
        return
    run = runner.padded_decode.run

    def noting_the_bucket(bucket: DecodeBucket) -> None:
        buckets.append(bucket)
        run(bucket)

    monkeypatch.setattr(runner.padded_decode, "run", noting_the_bucket)


def random_prompts(seed: int, lengths: Sequence[int], vocab_size: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab_size) for _ in range(length)] for length in lengths]


def generate(
    runner: ModelRunner,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    token_budget: int = 512,
    max_num_seqs: int = 16,
    num_blocks: int | None = None,
    sampling: Sequence[SamplingParams] | None = None,
    policy: str = "sarathi",
    enable_prefix_caching: bool = False,
    arrival_steps: Sequence[int] | None = None,
    async_scheduling: bool = False,
) -> Generation:
    """Runs every prompt to `max_new_tokens` through the scheduler and the runner (EOS ignored).

    Step `i` is scheduled at time `i`, so `arrival_steps[r]` delays request `r` to that step.
    With `async_scheduling` each batch is scheduled and run before the previous one is updated,
    as the engine does."""
    info = runner.model_info
    if num_blocks is None:
        num_blocks = runner.determine_num_kv_blocks()
    if runner.requests is None:
        runner.init_kv_cache(num_blocks)
    scheduler = Scheduler(
        SchedulerConfig(
            policy=policy,
            token_budget=token_budget,
            max_num_seqs=max_num_seqs,
            max_model_len=info.max_model_len,
            block_size=info.block_size,
            num_blocks=num_blocks,
            watermark=0.0,
            enable_prefix_caching=enable_prefix_caching,
            max_batches_in_flight=2 if async_scheduling else 1,
            async_scheduling=async_scheduling,
        )
    )
    for request_id, prompt in enumerate(prompts):
        arrival = float(arrival_steps[request_id]) if arrival_steps is not None else 0.0
        scheduler.add_request(
            request_id, prompt_token_ids=list(prompt), max_new_tokens=max_new_tokens, arrival_time=arrival
        )
    result = Generation(outputs={request_id: [] for request_id in range(len(prompts))})

    def new_request(request_id: int) -> NewRequest:
        params = sampling[request_id] if sampling is not None else GREEDY
        return NewRequest(request_id, list(prompts[request_id]), params)

    def record(batch: Batch, output: StepOutput, dropped: set[int]) -> None:
        """`dropped`: requests preempted while `batch` ran (async scheduling): their tokens from it
        are dropped, as the scheduler drops them."""
        producing = [entry.id for entry in batch.requests if entry.produces_token]
        tokens = np.frombuffer(output.sampled_token_ids, dtype="<u4").tolist()
        for request_id, token in zip(producing, tokens, strict=True):
            if request_id not in dropped:
                result.outputs[request_id].append(token)
        for request_id, logprobs in zip(producing, output.logprobs, strict=False):
            if logprobs is not None:
                result.logprobs.setdefault(request_id, []).append(logprobs)
        for prompt in output.prompt_logprobs:
            positions = result.prompt_logprobs.setdefault(prompt.request_id, {})
            for offset, logprobs in enumerate(prompt.tokens):
                assert prompt.first_position + offset not in positions, "a prompt position reported twice"
                positions[prompt.first_position + offset] = logprobs
        for finished in scheduler.update(batch, output.sampled_token_ids):
            result.finished_since_last_step.add(finished.id)

    in_flight: deque[tuple[Batch, StepOutput, set[int]]] = deque()
    step_id = 0
    while len(scheduler) or in_flight:
        if len(in_flight) == scheduler.config.max_batches_in_flight or not len(scheduler):
            record(*in_flight.popleft())
            continue
        batch = scheduler.schedule(float(step_id))
        step_id += 1
        for _, _, dropped in in_flight:
            dropped.update(batch.preempted_ids)
        if not batch.requests and not batch.preempted_ids:
            scheduler.update(batch, [])
            if in_flight:
                record(*in_flight.popleft())
            continue
        for entry in batch.requests:
            if entry.is_new:
                result.num_cached_prompt_tokens += entry.num_computed_tokens
        result.num_preemptions += len(batch.preempted_ids)
        is_prefill = [entry.is_prefill for entry in batch.requests]
        result.num_mixed_steps += any(is_prefill) and not all(is_prefill)
        result.max_chunk_tokens = max([result.max_chunk_tokens, *(e.num_tokens for e in batch.requests)])
        result.step_sizes.append(batch.num_tokens)
        result.finished_since_last_step.difference_update(batch.finished_ids)
        in_flight.append((batch, runner.execute(build_step(step_id, batch, new_request)), set()))
    result.num_steps = step_id
    return result


def hf_greedy(model_dir: Path, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
    """Hugging Face transformers' greedy `generate`, one prompt at a time, fp32 on the CPU, EOS ignored."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([list(prompt)])
            generated = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
            )
            outputs.append(generated[0, len(prompt) :].tolist())
    return outputs


def hf_logits(model_dir: Path, tokens: Sequence[int]) -> torch.Tensor:
    """Hugging Face's next-token logits after every prefix of `tokens` ([len(tokens), vocab])."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.inference_mode():
        return model(torch.tensor([list(tokens)])).logits[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tp_worker(rank: int, config: ModelRunnerConfig, prompts: list[list[int]], max_new_tokens: int, queue: Any) -> None:
    """One tensor-parallel rank: its own runner and an identical scheduler (same batches as the engine sends)."""
    torch.set_num_threads(1)
    runner = ModelRunner(config, rank)
    try:
        generation = generate(runner, prompts, max_new_tokens, token_budget=16, num_blocks=64)
        queue.put((rank, generation.outputs))
    finally:
        runner.shutdown()
