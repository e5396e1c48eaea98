"""Greedy tokens served by the whole engine (socket, scheduler, worker, sampling) equal Hugging
Face transformers' greedy generation on the same weights, also when requests share batches."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import transformers
import trio

from engine.client import connect
from engine.wire.sampling_params import SamplingParams
from support.engine_server import RunningServer, start_server

PROMPTS = [[3, 17, 42, 99, 7], list(range(10, 40)), [5] * 3, list(range(200, 290, 3))]
NEW_TOKENS = 12


def transformers_greedy(model_dir: Path, prompt: list[int]) -> list[int]:
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        output = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=0,
        )
    return output[0, len(prompt) :].tolist()


VARIANTS = {"reference": ["--attention-backend", "reference"], "synchronous": ["--no-async-scheduling"]}


@pytest.fixture(params=["default", *VARIANTS])
def served_by(request: pytest.FixtureRequest, server: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The shared server (defaults: async scheduling, `--attention-backend auto`), one with
    `--attention-backend reference`, and one scheduling each step after the previous finished."""
    if request.param == "default":
        yield server
        return
    variant = start_server(tiny_model_dir, "--num-kv-blocks", "128", *VARIANTS[request.param])
    yield variant
    variant.stop()


async def test_concurrent_greedy_requests_match_transformers(served_by: RunningServer, tiny_model_dir: Path) -> None:
    served: dict[int, list[int]] = {}
    sampling = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
    async with connect(served_by.host, served_by.rpc_port) as client:

        async def run(index: int) -> None:
            _, token_ids, _ = await client.complete(sampling=sampling, prompt_token_ids=PROMPTS[index])
            served[index] = token_ids

        async with trio.open_nursery() as nursery:
            for index in range(len(PROMPTS)):
                nursery.start_soon(run, index)
    expected = {index: transformers_greedy(tiny_model_dir, prompt) for index, prompt in enumerate(PROMPTS)}
    assert served == expected
