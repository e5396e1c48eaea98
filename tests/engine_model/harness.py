"""Drives a `ModelRunner` with the real Rust scheduler, building each `StepInput` from its batch
exactly as the engine does, and computes the Hugging Face reference outputs to compare with."""

import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.worker.model_runner import ModelRunner, ModelRunnerConfig
from engine.wire.sampling_params import SamplingParams
from engine.scheduler import Scheduler, SchedulerConfig
from engine.wire.step import NewRequest, ScheduledChunk, StepInput, TokenLogprobs

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
) -> Generation:
    """Runs every prompt to `max_new_tokens` through the scheduler and the runner (EOS ignored).

    Step `i` is scheduled at time `i`, so `arrival_steps[r]` delays request `r` to that step."""
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
        )
    )
    for request_id, prompt in enumerate(prompts):
        arrival = float(arrival_steps[request_id]) if arrival_steps is not None else 0.0
        scheduler.add_request(
            request_id, prompt_token_ids=list(prompt), max_new_tokens=max_new_tokens, arrival_time=arrival
        )
    result = Generation(outputs={request_id: [] for request_id in range(len(prompts))})
    sent: set[int] = set()
    finished: list[int] = []
    step_id = 0
    while len(scheduler):
        batch = scheduler.schedule(float(step_id))
        if not batch.requests and not batch.preempted_ids:
            scheduler.update(batch, [])
            step_id += 1
            continue
        new_requests = []
        for entry in batch.requests:
            if entry.id not in sent:
                result.num_cached_prompt_tokens += entry.num_computed_tokens
                params = sampling[entry.id] if sampling is not None else GREEDY
                new_requests.append(NewRequest(entry.id, list(prompts[entry.id]), params))
                sent.add(entry.id)
        chunks = [
            ScheduledChunk(e.id, e.num_tokens, e.num_computed_tokens, e.produces_token, list(e.new_block_ids))
            for e in batch.requests
        ]
        step = StepInput(step_id, chunks, new_requests, list(batch.preempted_ids), finished)
        output = runner.execute(step)
        producing = [entry.id for entry in batch.requests if entry.produces_token]
        for request_id, token in zip(producing, output.sampled_token_ids, strict=True):
            result.outputs[request_id].append(token)
        for request_id, logprobs in zip(producing, output.logprobs, strict=False):
            if logprobs is not None:
                result.logprobs.setdefault(request_id, []).append(logprobs)
        for prompt in output.prompt_logprobs:
            positions = result.prompt_logprobs.setdefault(prompt.request_id, {})
            for offset, logprobs in enumerate(prompt.tokens):
                assert prompt.first_position + offset not in positions, "a prompt position reported twice"
                positions[prompt.first_position + offset] = logprobs
        result.num_preemptions += len(batch.preempted_ids)
        is_prefill = [entry.is_prefill for entry in batch.requests]
        result.num_mixed_steps += any(is_prefill) and not all(is_prefill)
        result.max_chunk_tokens = max([result.max_chunk_tokens, *(e.num_tokens for e in batch.requests)])
        result.step_sizes.append(batch.num_tokens)
        finished = [done.id for done in scheduler.update(batch, output.sampled_token_ids)]
        step_id += 1
    runner.execute(StepInput(step_id, [], finished_ids=finished))
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
